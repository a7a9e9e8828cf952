/* Learning-rate schedules at chosen steps against hand-computed values (boundaries, warmup), and their parsing
 * from CLI strings and JSON, errors included. */
#include <math.h>
#include <string.h>

#include "engine/lr_schedule.h"
#include "test_util.h"

static void expect_lr(const kelp_lr_schedule *s, int64_t step, double want)
{
    double got = kelp_lr_at(s, step);
    if (!(fabs(got - want) <= 1e-12 + 1e-12 * fabs(want)))
        fail_msg("%s schedule at step %lld: got %.17g, want %.17g", kelp_lr_kind_name(s->kind), (long long)step, got,
                 want);
}

static kelp_lr_schedule cli(const char *spec, double base_lr, int64_t total_steps)
{
    kelp_lr_schedule s;
    TEST_OK(kelp_lr_schedule_parse_cli(spec, base_lr, total_steps, &s));
    return s;
}

static void test_constant(void **state)
{
    (void)state;
    kelp_lr_schedule s = cli("constant", 0.1, 0);
    expect_lr(&s, 0, 0.1);
    expect_lr(&s, 1000000, 0.1);
    expect_lr(&s, -5, 0.1);
}

static void test_step(void **state)
{
    (void)state;
    kelp_lr_schedule s = cli("step:30:0.1", 1.0, 0);
    expect_lr(&s, 0, 1.0);
    expect_lr(&s, 29, 1.0);
    expect_lr(&s, 30, 0.1);
    expect_lr(&s, 59, 0.1);
    expect_lr(&s, 60, 0.01);
    expect_lr(&s, 95, 0.001);
    kelp_lr_schedule half = cli("step:2:0.5", 0.8, 0);
    expect_lr(&half, 1, 0.8);
    expect_lr(&half, 2, 0.4);
    expect_lr(&half, 5, 0.2);
}

/* MultiStepLR decays at the milestone itself: step 30 already runs with gamma * base. */
static void test_multistep(void **state)
{
    (void)state;
    kelp_lr_schedule s = cli("multistep:30,60,80:0.1", 2.0, 0);
    expect_lr(&s, 0, 2.0);
    expect_lr(&s, 29, 2.0);
    expect_lr(&s, 30, 0.2);
    expect_lr(&s, 59, 0.2);
    expect_lr(&s, 60, 0.02);
    expect_lr(&s, 79, 0.02);
    expect_lr(&s, 80, 0.002);
    expect_lr(&s, 100000, 0.002);
}

static void test_cosine(void **state)
{
    (void)state;
    kelp_lr_schedule s = cli("cosine:0.1", 1.0, 100);
    expect_lr(&s, 0, 1.0);
    /* 0.1 + 0.9 (1 + cos(pi/4)) / 2 */
    expect_lr(&s, 25, 0.86819805153394638);
    expect_lr(&s, 50, 0.55);
    /* 0.1 + 0.9 (1 + cos(3 pi/4)) / 2 */
    expect_lr(&s, 75, 0.23180194846605362);
    expect_lr(&s, 100, 0.1);
    expect_lr(&s, 150, 0.1);
    kelp_lr_schedule to_zero = cli("cosine", 0.4, 10);
    expect_lr(&to_zero, 5, 0.2);
    expect_lr(&to_zero, 10, 0.0);
}

static void test_poly(void **state)
{
    (void)state;
    kelp_lr_schedule s = cli("poly:2", 1.0, 100);
    expect_lr(&s, 0, 1.0);
    expect_lr(&s, 50, 0.25);
    expect_lr(&s, 90, 0.01);
    expect_lr(&s, 100, 0.0);
    expect_lr(&s, 200, 0.0);
    kelp_lr_schedule p09 = cli("poly:0.9", 0.1, 10);
    expect_lr(&p09, 5, 0.1 * pow(0.5, 0.9));
    kelp_lr_schedule linear = cli("poly", 1.0, 4);
    expect_lr(&linear, 1, 0.75);
}

/* LinearLR from base * f to base over the warmup, then the main schedule restarted at t = 0. */
static void test_warmup(void **state)
{
    (void)state;
    kelp_lr_schedule s = cli("warmup:10:0.1+cosine", 1.0, 110);
    expect_lr(&s, 0, 0.1);
    expect_lr(&s, 5, 0.55);
    expect_lr(&s, 9, 0.91);
    expect_lr(&s, 10, 1.0);
    expect_lr(&s, 60, 0.5);
    expect_lr(&s, 110, 0.0);

    kelp_lr_schedule ms = cli("warmup:5:0.5+multistep:10:0.5", 1.0, 0);
    expect_lr(&ms, 0, 0.5);
    expect_lr(&ms, 4, 0.9);
    expect_lr(&ms, 5, 1.0);
    expect_lr(&ms, 14, 1.0);
    expect_lr(&ms, 15, 0.5);

    kelp_lr_schedule third = cli("warmup:3+constant", 0.3, 0);
    expect_lr(&third, 0, 0.1);
    expect_lr(&third, 1, 0.3 * (1.0 / 3.0 + (2.0 / 3.0) / 3.0));
    expect_lr(&third, 3, 0.3);

    kelp_lr_schedule exponent = cli("warmup:4:1e+0+poly:1e+0", 1.0, 8);
    assert_int_equal(exponent.kind, KELP_LR_POLY);
    expect_lr(&exponent, 0, 1.0);
    expect_lr(&exponent, 6, 0.5);
}

static void test_cli_fields(void **state)
{
    (void)state;
    kelp_lr_schedule s = cli("warmup:500:0.01+cosine:1e-5", 0.1, 10000);
    assert_int_equal(s.kind, KELP_LR_COSINE);
    assert_int_equal(s.warmup_steps, 500);
    assert_true(s.warmup_start_factor == 0.01 && s.min_lr == 1e-5 && s.base_lr == 0.1);
    assert_int_equal(s.total_steps, 10000);
    s = cli("multistep:30,60,80:0.1", 0.1, 0);
    assert_int_equal(s.n_milestones, 3);
    assert_int_equal(s.milestones[2], 80);
    s = cli("step:30", 0.1, 0);
    assert_int_equal(s.step_size, 30);
    assert_true(s.gamma == 0.1);
    s = cli("poly", 0.1, 10);
    assert_true(s.power == 1.0);
}

static void test_cli_errors(void **state)
{
    (void)state;
    kelp_lr_schedule s;
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("cosin", 0.1, 100, &s), KELP_ERR_FORMAT, "unknown schedule 'cosin'");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("", 0.1, 100, &s), KELP_ERR_FORMAT, "unknown schedule ''");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("step:x:0.1", 0.1, 100, &s), KELP_ERR_FORMAT, "step size 'x'");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("step:30:fast", 0.1, 100, &s), KELP_ERR_FORMAT, "gamma 'fast'");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("step", 0.1, 100, &s), KELP_ERR_FORMAT, "step:STEP_SIZE[:GAMMA]");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("step:0", 0.1, 100, &s), KELP_ERR_INVALID_ARG, "'step_size'");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("step:-3", 0.1, 100, &s), KELP_ERR_FORMAT, "step size '-3'");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("step:30:0.1:7", 0.1, 100, &s), KELP_ERR_FORMAT, "too many");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("constant:1", 0.1, 100, &s), KELP_ERR_FORMAT, "takes the form constant");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("multistep:30,,80", 0.1, 100, &s), KELP_ERR_FORMAT, "milestone ''");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("multistep:60,30", 0.1, 100, &s), KELP_ERR_INVALID_ARG,
                    "'milestones' entry 1");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("multistep:30,60:0", 0.1, 100, &s), KELP_ERR_INVALID_ARG,
                    "'gamma'");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("poly:-1", 0.1, 100, &s), KELP_ERR_INVALID_ARG, "'power'");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("cosine:inf", 0.1, 100, &s), KELP_ERR_FORMAT, "min_lr 'inf'");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("warmup:10", 0.1, 100, &s), KELP_ERR_FORMAT, "main schedule");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("warmup:x+cosine", 0.1, 100, &s), KELP_ERR_FORMAT,
                    "warmup steps 'x'");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("warmup:10:0+cosine", 0.1, 100, &s), KELP_ERR_INVALID_ARG,
                    "'warmup_start_factor'");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("warm:10+cosine", 0.1, 100, &s), KELP_ERR_FORMAT,
                    "warmup:STEPS[:START_FACTOR]");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("warmup:100+cosine", 0.1, 100, &s), KELP_ERR_INVALID_ARG,
                    "no step after 100 warmup steps");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("poly", 0.1, 0, &s), KELP_ERR_INVALID_ARG, "total steps 0");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("constant", -0.1, 100, &s), KELP_ERR_INVALID_ARG, "learning rate");
    TEST_FAILS_WITH(kelp_lr_schedule_parse_cli("step:x", 0.1, 100, &s), KELP_ERR_FORMAT, "'step:x'");
}

static kelp_status parse_json(const char *text, double base_lr, int64_t total_steps, kelp_lr_schedule *out)
{
    cJSON *json = cJSON_Parse(text);
    assert_non_null(json);
    kelp_status s = kelp_lr_schedule_parse_json(json, base_lr, total_steps, out);
    cJSON_Delete(json);
    return s;
}

/* JSON and the CLI string of the same schedule give the same rates, bit for bit. */
static void expect_same(const char *json, const char *spec, double base_lr, int64_t total_steps)
{
    kelp_lr_schedule a, b;
    TEST_OK(parse_json(json, base_lr, total_steps, &a));
    TEST_OK(kelp_lr_schedule_parse_cli(spec, base_lr, total_steps, &b));
    for (int64_t step = 0; step <= total_steps + 10; step += 7)
        if (kelp_lr_at(&a, step) != kelp_lr_at(&b, step))
            fail_msg("%s and %s differ at step %lld", json, spec, (long long)step);
}

static void test_json(void **state)
{
    (void)state;
    kelp_lr_schedule s;
    TEST_OK(parse_json("{\"type\":\"cosine\",\"warmup_steps\":500,\"min_lr\":1e-5}", 0.1, 10000, &s));
    assert_int_equal(s.kind, KELP_LR_COSINE);
    assert_int_equal(s.warmup_steps, 500);
    assert_true(s.min_lr == 1e-5 && s.warmup_start_factor == 1.0 / 3.0);
    expect_lr(&s, 500, 0.1);

    expect_same("{\"type\":\"cosine\",\"warmup_steps\":50,\"warmup_start_factor\":0.01,\"min_lr\":1e-4}",
                "warmup:50:0.01+cosine:1e-4", 0.1, 1000);
    expect_same("{\"type\":\"multistep\",\"milestones\":[30,60,80],\"gamma\":0.1}", "multistep:30,60,80:0.1", 0.1,
                200);
    expect_same("{\"type\":\"step\",\"step_size\":30,\"gamma\":0.3}", "step:30:0.3", 0.1, 200);
    expect_same("{\"type\":\"poly\",\"power\":0.9}", "poly:0.9", 0.1, 300);
    expect_same("{\"type\":\"constant\",\"warmup_steps\":20}", "warmup:20+constant", 0.1, 100);
}

static void test_json_errors(void **state)
{
    (void)state;
    kelp_lr_schedule s;
    TEST_FAILS_WITH(parse_json("{\"min_lr\":0}", 0.1, 100, &s), KELP_ERR_FORMAT, "missing field 'type'");
    TEST_FAILS_WITH(parse_json("{\"type\":\"exp\"}", 0.1, 100, &s), KELP_ERR_FORMAT, "'exp'");
    TEST_FAILS_WITH(parse_json("\"cosine\"", 0.1, 100, &s), KELP_ERR_FORMAT, "JSON object");
    TEST_FAILS_WITH(parse_json("{\"type\":\"cosine\",\"gamma\":0.1}", 0.1, 100, &s), KELP_ERR_FORMAT,
                    "unknown field 'gamma'");
    TEST_FAILS_WITH(parse_json("{\"type\":\"step\",\"gamma\":0.1}", 0.1, 100, &s), KELP_ERR_FORMAT,
                    "missing field 'step_size'");
    TEST_FAILS_WITH(parse_json("{\"type\":\"step\",\"step_size\":2.5}", 0.1, 100, &s), KELP_ERR_FORMAT,
                    "'step_size'");
    TEST_FAILS_WITH(parse_json("{\"type\":\"multistep\"}", 0.1, 100, &s), KELP_ERR_FORMAT,
                    "missing field 'milestones'");
    TEST_FAILS_WITH(parse_json("{\"type\":\"multistep\",\"milestones\":30}", 0.1, 100, &s), KELP_ERR_FORMAT,
                    "'milestones'");
    TEST_FAILS_WITH(parse_json("{\"type\":\"multistep\",\"milestones\":[10,\"x\"]}", 0.1, 100, &s),
                    KELP_ERR_FORMAT, "'milestones' entry 1");
    TEST_FAILS_WITH(parse_json("{\"type\":\"multistep\",\"milestones\":[]}", 0.1, 100, &s), KELP_ERR_FORMAT,
                    "'milestones'");
    TEST_FAILS_WITH(parse_json("{\"type\":\"cosine\",\"warmup_steps\":-1}", 0.1, 100, &s), KELP_ERR_FORMAT,
                    "'warmup_steps'");
    TEST_FAILS_WITH(parse_json("{\"type\":\"poly\",\"power\":\"two\"}", 0.1, 100, &s), KELP_ERR_FORMAT,
                    "'power'");
    TEST_FAILS_WITH(parse_json("{\"type\":\"cosine\",\"min_lr\":-1}", 0.1, 100, &s), KELP_ERR_INVALID_ARG,
                    "'min_lr'");
    TEST_FAILS_WITH(parse_json("{\"type\":\"cosine\",\"warmup_steps\":100}", 0.1, 100, &s), KELP_ERR_INVALID_ARG,
                    "warmup steps");
}

static void test_check(void **state)
{
    (void)state;
    kelp_lr_schedule s = kelp_lr_schedule_defaults(KELP_LR_MULTISTEP, 0.1, 0);
    TEST_FAILS_WITH(kelp_lr_schedule_check(&s), KELP_ERR_INVALID_ARG, "'milestones' has 0 entries");
    s.n_milestones = 2;
    s.milestones[0] = 5;
    s.milestones[1] = 5;
    TEST_FAILS_WITH(kelp_lr_schedule_check(&s), KELP_ERR_INVALID_ARG, "multistep");
    s.milestones[1] = 6;
    TEST_OK(kelp_lr_schedule_check(&s));
    s.warmup_steps = -1;
    TEST_FAILS_WITH(kelp_lr_schedule_check(&s), KELP_ERR_INVALID_ARG, "'warmup_steps'");
    assert_string_equal(kelp_lr_kind_name(KELP_LR_POLY), "poly");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constant),    cmocka_unit_test(test_step),       cmocka_unit_test(test_multistep),
        cmocka_unit_test(test_cosine),      cmocka_unit_test(test_poly),       cmocka_unit_test(test_warmup),
        cmocka_unit_test(test_cli_fields),  cmocka_unit_test(test_cli_errors), cmocka_unit_test(test_json),
        cmocka_unit_test(test_json_errors), cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
