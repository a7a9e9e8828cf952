/* Replayed inference forwards (engine/graph_replay.c), on the CPU backend given counting capture entries: the
 * CPU runs the nodes as they are queued, so a "recording" here computes the forward and a "replay" does nothing,
 * which lets the test follow the decisions. The first forward at a batch size runs plainly, the second is recorded
 * then replayed, later ones replay only; a new batch size starts over; a failed capture or replay falls back to a
 * plain forward with the right outputs; training and profiled graphs never capture. CUDA's own capture runs in
 * test_cuda_ops. */
#include <string.h>

#include "engine/backend.h"
#include "engine/graph_internal.h"
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

/* Training graphs (in training or eval mode) and profiled graphs run node by node, always. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_record_once_then_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_capture_runs_plainly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_replay_records_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_training_and_profiled_graphs_never_capture, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
