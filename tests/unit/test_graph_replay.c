/* Replayed inference forwards and training steps (engine/graph_replay.c), on the CPU backend given counting capture
 * entries: the CPU runs the nodes as they are queued, so a "recording" here computes the forward (or the step) and
 * a "replay" does nothing, which lets the test follow the decisions. The first run at a batch size is plain, the
 * second is recorded then replayed, later ones replay only; a new batch size starts over; a failed capture or
 * replay falls back to a plain run with the right results; a recorded step computes what a plain one does, loss
 * scale included; training forwards, profiled graphs and steps with dropout never capture, and freezing drops a
 * recorded step. CUDA's own capture runs in test_cuda_ops. */
#include <string.h>

#include "engine/backend.h"
#include "engine/graph_internal.h"
#include "engine/train_step.h"
#include "ref/graph_util.h"

static struct {
    int begins, ends, replays, destroys, live;
    bool fail_begin, fail_end, fail_replay;
} calls;

static kelp_status capture_begin(kelp_backend *be)
{
    (void)be;
    calls.begins++;
    return calls.fail_begin ? kelp_set_error(KELP_ERR_UNSUPPORTED, "test: no capture") : KELP_OK;
}

static int recording; /* any address: what a backend returns for its recording */

static kelp_status capture_end(kelp_backend *be, void **out)
{
    (void)be;
    calls.ends++;
    if (calls.fail_end)
        return kelp_set_error(KELP_ERR_BACKEND, "test: capture invalidated");
    if (out) {
        *out = &recording;
        calls.live++;
    }
    return KELP_OK;
}

static kelp_status replay(kelp_backend *be, void *recorded)
{
    (void)be;
    assert_ptr_equal(recorded, &recording);
    calls.replays++;
    return calls.fail_replay ? kelp_set_error(KELP_ERR_UNSUPPORTED, "test: memory moved") : KELP_OK;
}

static void replay_destroy(kelp_backend *be, void *recorded)
{
    (void)be;
    assert_ptr_equal(recorded, &recording);
    calls.destroys++;
    calls.live--;
}

static const char *const model =
    "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[6,6,2]}],\"nodes\":["
    "{\"name\":\"conv\",\"type\":\"conv2d\",\"out_channels\":4,\"kernel_size\":3,\"padding\":1},"
    "{\"name\":\"bn\",\"type\":\"batch_norm\"},{\"name\":\"relu\",\"type\":\"relu\"},"
    "{\"name\":\"pool\",\"type\":\"global_avg_pool\"},{\"name\":\"fc\",\"type\":\"linear\",\"out_features\":3}]}";

static kelp_backend_iface with_capture;
static const kelp_backend_iface *plain_iface;

static int setup(void **state)
{
    (void)state;
    kelp_backend *be = kelp_ctx_backend(test_ctx());
    plain_iface = be->iface;
    with_capture = *be->iface;
    with_capture.capture_begin = capture_begin;
    with_capture.capture_end = capture_end;
    with_capture.replay = replay;
    with_capture.replay_destroy = replay_destroy;
    be->iface = &with_capture;
    memset(&calls, 0, sizeof calls);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kelp_ctx_backend(test_ctx())->iface = plain_iface;
    return 0;
}

/* A forward on a fresh input, and its outputs as the graph left them. */
static void forward(kelp_graph *g, uint64_t seed, float *out)
{
    test_fill_graph_inputs(g, 0, seed);
    TEST_OK(kelp_graph_forward(g));
    kelp_tensor *y = kelp_graph_output(g, 0);
    TEST_OK(kelp_tensor_download(y, out, kelp_tensor_bytes(y)));
}

static void expect_calls(int begins, int ends, int replays, int destroys)
{
    assert_int_equal(calls.begins, begins);
    assert_int_equal(calls.ends, ends);
    assert_int_equal(calls.replays, replays);
    assert_int_equal(calls.destroys, destroys);
}

static void test_record_once_then_replay(void **state)
{
    (void)state;
    kelp_graph *g = test_build(model, 4, false, false, false);
    float y[12];
    forward(g, 1, y);
    expect_calls(0, 0, 0, 0); /* the first forward at batch 4 runs plainly */
    forward(g, 2, y);
    expect_calls(1, 1, 1, 0); /* the second is recorded, then replayed */
    forward(g, 3, y);
    forward(g, 4, y);
    expect_calls(1, 1, 3, 0); /* later ones replay only */
    TEST_OK(kelp_graph_set_batch(g, 2));
    forward(g, 5, y);
    expect_calls(1, 1, 3, 1); /* a new batch size drops the recording and runs plainly */
    forward(g, 6, y);
    expect_calls(2, 2, 4, 1);
    kelp_graph_destroy(g);
    expect_calls(2, 2, 4, 2);
    assert_int_equal(calls.live, 0);
}

/* Whatever fails in a capture, or the first replay of a recording, ran nothing a caller sees: the forward runs
 * plainly, with the outputs of a graph that never captured, the graph stops trying and keeps the reason. */
static void test_failed_capture_runs_plainly(void **state)
{
    (void)state;
    kelp_backend *be = kelp_ctx_backend(test_ctx());
    be->iface = plain_iface;
    kelp_graph *reference = test_build(model, 4, false, false, false);
    float want[3][12];
    for (int i = 0; i < 3; i++)
        forward(reference, 10 + (uint64_t)i, want[i]);
    kelp_graph_destroy(reference);
    be->iface = &with_capture;

    const char *const what[3] = {"capture_begin failed", "capture_end failed", "the first replay failed"};
    const char *const why[3] = {"no capture", "capture invalidated", "memory moved"};
    for (int failing = 0; failing < 3; failing++) {
        memset(&calls, 0, sizeof calls);
        calls.fail_begin = failing == 0;
        calls.fail_end = failing == 1;
        calls.fail_replay = failing == 2;
        kelp_graph *g = test_build(model, 4, false, false, false);
        float y[12];
        for (int i = 0; i < 3; i++) {
            forward(g, 10 + (uint64_t)i, y);
            test_assert_close_f(y, want[i], 12, 0, 0, what[failing]);
        }
        expect_calls(1, failing >= 1, failing == 2, failing == 2);
        assert_true(g->replay_off);
        assert_non_null(strstr(g->replay_off_why, why[failing]));
        kelp_graph_destroy(g);
        assert_int_equal(calls.live, 0);
    }
}

/* A replay the backend refuses (it moved memory the recording addresses) is dropped; that forward runs plainly,
 * and the next one records again. */
static void test_refused_replay_records_again(void **state)
{
    (void)state;
    kelp_graph *g = test_build(model, 4, false, false, false);
    float y[12];
    forward(g, 1, y);
    forward(g, 2, y);
    expect_calls(1, 1, 1, 0);
    calls.fail_replay = true;
    forward(g, 3, y);
    expect_calls(1, 1, 2, 1);
    calls.fail_replay = false;
    forward(g, 4, y);
    expect_calls(2, 2, 3, 1);
    kelp_graph_destroy(g);
    assert_int_equal(calls.live, 0);
}

/* Training graphs' forwards (in training or eval mode) and profiled graphs run node by node, always. */
static void test_training_and_profiled_graphs_never_capture(void **state)
{
    (void)state;
    kelp_graph *train = test_build(model, 4, true, false, false);
    TEST_OK(kelp_graph_set_training(train, false));
    kelp_graph *profiled = test_build(model, 4, false, false, false);
    TEST_OK(kelp_graph_set_profiling(profiled, true));
    float y[12];
    for (int i = 0; i < 3; i++) {
        forward(train, 1, y);
        forward(profiled, 1, y);
    }
    expect_calls(0, 0, 0, 0);
    kelp_graph_destroy(train);
    kelp_graph_destroy(profiled);
}

static const char *const train_model =
    "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"image\",\"shape\":[6,6,2]}],\"nodes\":["
    "{\"name\":\"conv\",\"type\":\"conv2d\",\"out_channels\":4,\"kernel_size\":3,\"padding\":1},"
    "{\"name\":\"bn\",\"type\":\"batch_norm\"},{\"name\":\"relu\",\"type\":\"relu\"},"
    "{\"name\":\"pool\",\"type\":\"global_avg_pool\"},{\"name\":\"fc\",\"type\":\"linear\",\"out_features\":3}],"
    "\"loss\":{\"type\":\"softmax_cross_entropy\"}}";

#define TRAIN_PARAMS (4 * 3 * 3 * 2 + 4 + 4 + 4 + 3 * 4 + 3) /* conv, bn, fc */

/* A training step on a fresh batch, and its gradients. */
static void step(kelp_graph *g, uint64_t seed, float scale, float *grads)
{
    test_fill_graph_inputs(g, 3, seed);
    TEST_OK(kelp_graph_set_loss_scale(g, scale));
    TEST_OK(kelp_graph_forward_backward(g));
    assert_int_equal(kelp_shape_numel(&kelp_graph_grads(g)->shape), TRAIN_PARAMS);
    TEST_OK(kelp_tensor_download(kelp_graph_grads(g), grads, TRAIN_PARAMS * sizeof(float)));
}

/* A step's gradients are what zero_grad, forward and backward give, the first time plainly and the second while
 * it is recorded (this CPU runs what it records), with the loss scale it was given; later steps replay, and each
 * step advances the dropout step counter once, replayed or not. */
static void test_training_step_records_once_then_replays(void **state)
{
    (void)state;
    kelp_backend *be = kelp_ctx_backend(test_ctx());
    be->iface = plain_iface;
    kelp_graph *reference = test_build(train_model, 4, true, true, false);
    float want[2][TRAIN_PARAMS];
    for (int i = 0; i < 2; i++) {
        test_fill_graph_inputs(reference, 3, 20 + (uint64_t)i);
        TEST_OK(kelp_graph_zero_grad(reference));
        TEST_OK(kelp_graph_forward(reference));
        TEST_OK(kelp_graph_backward(reference));
        TEST_OK(kelp_tensor_download(kelp_graph_grads(reference), want[i], sizeof want[i]));
    }
    kelp_graph_destroy(reference);
    be->iface = &with_capture;

    kelp_graph *g = test_build(train_model, 4, true, true, false);
    float grads[TRAIN_PARAMS];
    step(g, 20, 1.0f, grads);
    expect_calls(0, 0, 0, 0);
    test_assert_close_f(grads, want[0], TRAIN_PARAMS, 0, 0, "plain step");
    step(g, 21, 4.0f, grads); /* a power of two: exactly 4 times the gradients */
    expect_calls(1, 1, 1, 0);
    for (int i = 0; i < TRAIN_PARAMS; i++)
        want[1][i] *= 4.0f;
    test_assert_close_f(grads, want[1], TRAIN_PARAMS, 0, 0, "recorded step");
    step(g, 22, 4.0f, grads);
    step(g, 23, 1.0f, grads);
    expect_calls(1, 1, 3, 0);
    assert_int_equal(kelp_graph_step(g), 4);
    kelp_graph_destroy(g);
    expect_calls(1, 1, 3, 1);
}

/* Freezing changes what backward computes: the recording is dropped, and the next steps warm up and record anew. */
static void test_freezing_drops_the_recorded_step(void **state)
{
    (void)state;
    kelp_graph *g = test_build(train_model, 4, true, true, false);
    float grads[TRAIN_PARAMS];
    step(g, 1, 1.0f, grads);
    step(g, 2, 1.0f, grads);
    expect_calls(1, 1, 1, 0);
    TEST_OK(kelp_graph_freeze(g, "conv.", true));
    expect_calls(1, 1, 1, 1);
    step(g, 3, 1.0f, grads);
    for (int i = 0; i < 4 * 3 * 3 * 2 + 4; i++) /* conv.weight and conv.bias come first */
        assert_true(grads[i] == 0.0f);
    expect_calls(1, 1, 1, 1);
    step(g, 4, 1.0f, grads);
    expect_calls(2, 2, 2, 1);
    kelp_graph_destroy(g);
}

/* kelp_train_step's update is part of the recorded step: on this CPU a replay runs nothing, so parameters that
 * stay put through a replayed step show that the update was recorded with it (an update queued after the replay
 * would move them). A step without the update (kelp_graph_forward_backward) is another recording: it warms up and
 * records again, and so does the train step after it. Destroying the train step drops the recording that reads
 * its scalars. */
static void test_the_update_is_recorded_with_the_step(void **state)
{
    (void)state;
    kelp_graph *g = test_build(train_model, 4, true, true, false);
    kelp_optimizer_config c = kelp_optimizer_defaults(KELP_OPTIM_SGD);
    kelp_optimizer *opt;
    TEST_OK(kelp_optimizer_create(kelp_ctx_backend(test_ctx()), &c, TRAIN_PARAMS, &opt));
    kelp_train_step_config sc = {.clip_norm = 1.0};
    kelp_train_step *t;
    TEST_OK(kelp_train_step_create(g, opt, &sc, &t));
    float before[TRAIN_PARAMS], after[TRAIN_PARAMS];
    kelp_train_step_result r;
    for (int i = 0; i < 3; i++) {
        TEST_OK(kelp_tensor_download(kelp_graph_params(g), before, sizeof before));
        test_fill_graph_inputs(g, 3, 60 + (uint64_t)i);
        TEST_OK(kelp_train_step_run(t, 0.5f, 1.0f, &r));
        TEST_OK(kelp_tensor_download(kelp_graph_params(g), after, sizeof after));
        /* plain, then recorded (which runs here), then replayed (which does not) */
        assert_int_equal(memcmp(before, after, sizeof before) != 0, i < 2);
    }
    expect_calls(1, 1, 2, 0);
    float grads[TRAIN_PARAMS];
    step(g, 63, 1.0f, grads); /* no update: the recording is dropped, and this step is plain */
    expect_calls(1, 1, 2, 1);
    step(g, 64, 1.0f, grads);
    expect_calls(2, 2, 3, 1);
    TEST_OK(kelp_train_step_run(t, 0.5f, 1.0f, &r)); /* the update again: plain, then recorded */
    TEST_OK(kelp_train_step_run(t, 0.5f, 1.0f, &r));
    expect_calls(3, 3, 4, 2);
    kelp_train_step_destroy(t);
    expect_calls(3, 3, 4, 3);
    assert_null(g->replay);
    kelp_optimizer_destroy(opt);
    kelp_graph_destroy(g);
}

/* A profile times each node: profiled steps run plainly. A step needs a graph with a loss in training mode. */
static void test_steps_that_never_capture(void **state)
{
    (void)state;
    kelp_graph *profiled = test_build(train_model, 4, true, true, false);
    TEST_OK(kelp_graph_set_profiling(profiled, true));
    for (int i = 0; i < 3; i++) {
        test_fill_graph_inputs(profiled, 3, (uint64_t)i);
        TEST_OK(kelp_graph_forward_backward(profiled));
    }
    expect_calls(0, 0, 0, 0);
    TEST_OK(kelp_graph_set_training(profiled, false));
    TEST_FAILS_WITH(kelp_graph_forward_backward(profiled), KELP_ERR_INVALID_ARG, "training mode");
    kelp_graph *inference = test_build(model, 4, false, false, false);
    TEST_FAILS_WITH(kelp_graph_forward_backward(inference), KELP_ERR_INVALID_ARG, "with a loss");
    kelp_graph_destroy(profiled);
    kelp_graph_destroy(inference);
}

static const char *const dropout_model =
    "{\"format\":\"kelp-model\",\"version\":1,\"inputs\":[{\"name\":\"x\",\"shape\":[64]}],\"nodes\":["
    "{\"name\":\"drop\",\"type\":\"dropout\",\"p\":0.5},{\"name\":\"fc\",\"type\":\"linear\",\"out_features\":4}],"
    "\"loss\":{\"type\":\"softmax_cross_entropy\"}}";

/* The dropout node's mask of the last training forward (its state). */
static void dropped(kelp_graph *g, uint8_t *mask)
{
    TEST_OK(g->be->iface->download(g->be, mask, g->nodes[0].state, 4 * 64));
}

/* Dropout reads its step from the graph's counter in backend memory, which each training forward advances on the
 * backend: so a graph with dropout records its step like any other (a replay draws that step's mask), the counter
 * follows the host's step through plain, recorded and replayed steps, a failed capture puts both back, and setting
 * the step (a resumed run) brings back that step's mask. */
static void test_dropout_steps_record_and_draw_from_the_counter(void **state)
{
    (void)state;
    kelp_backend *be = kelp_ctx_backend(test_ctx());
    be->iface = plain_iface;
    kelp_graph *plain = test_build(dropout_model, 4, true, true, false);
    uint8_t masks[3][4 * 64];
    for (int i = 0; i < 3; i++) {
        test_fill_graph_inputs(plain, 4, 7);
        TEST_OK(kelp_graph_forward_backward(plain));
        dropped(plain, masks[i]);
    }
    assert_memory_not_equal(masks[0], masks[1], sizeof masks[0]);
    int64_t counter;
    TEST_OK(be->iface->download(be, &counter, plain->step_counter, sizeof counter));
    assert_int_equal(counter, 3);
    TEST_OK(kelp_graph_set_step(plain, 1)); /* a resumed run: step 1's mask again */
    test_fill_graph_inputs(plain, 4, 7);
    TEST_OK(kelp_graph_forward_backward(plain));
    uint8_t again[4 * 64];
    dropped(plain, again);
    assert_memory_equal(again, masks[1], sizeof again);
    kelp_graph_destroy(plain);

    be->iface = &with_capture;
    kelp_graph *g = test_build(dropout_model, 4, true, true, false);
    for (int i = 0; i < 2; i++) { /* plain, then recorded (which runs here) */
        test_fill_graph_inputs(g, 4, 7);
        TEST_OK(kelp_graph_forward_backward(g));
        dropped(g, again);
        assert_memory_equal(again, masks[i], sizeof again);
    }
    expect_calls(1, 1, 1, 0);
    assert_int_equal(kelp_graph_step(g), 2);
    kelp_graph_destroy(g);

    calls.fail_end = true; /* the capture fails after running (here) the step: host and counter go back */
    g = test_build(dropout_model, 4, true, true, false);
    for (int i = 0; i < 3; i++) {
        test_fill_graph_inputs(g, 4, 7);
        TEST_OK(kelp_graph_forward_backward(g));
        dropped(g, again);
        assert_memory_equal(again, masks[i], sizeof again);
    }
    assert_int_equal(kelp_graph_step(g), 3);
    kelp_graph_destroy(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_record_once_then_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_capture_runs_plainly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_replay_records_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_training_and_profiled_graphs_never_capture, setup, teardown),
        cmocka_unit_test_setup_teardown(test_training_step_records_once_then_replays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freezing_drops_the_recorded_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_update_is_recorded_with_the_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_steps_that_never_capture, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dropout_steps_record_and_draw_from_the_counter, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
