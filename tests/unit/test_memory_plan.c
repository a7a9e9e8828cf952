/* The liveness planner: buffers alive at the same step never share bytes, and reuse actually happens. */
#include <stdlib.h>

#include "engine/memory_plan.h"
#include "ref/test_util.h"

static void assert_no_conflict(const kelp_plan_buffer *b, int n, size_t arena)
{
    for (int i = 0; i < n; i++) {
        assert_true(b[i].offset % KELP_PLAN_ALIGN == 0);
        assert_true(b[i].offset + b[i].size <= arena);
        for (int j = i + 1; j < n; j++) {
            bool live_together = b[i].first <= b[j].last && b[j].first <= b[i].last;
            bool bytes_overlap = b[i].size && b[j].size && b[i].offset < b[j].offset + b[j].size &&
                                 b[j].offset < b[i].offset + b[i].size;
            if (live_together && bytes_overlap)
                fail_msg("buffers %d [%d,%d] and %d [%d,%d] overlap in memory", i, b[i].first, b[i].last, j,
                         b[j].first, b[j].last);
        }
    }
}

static void test_chain_reuses_memory(void **state)
{
    (void)state;
    /* a chain of 10 activations, each alive from its producer to its consumer: two slots suffice */
    kelp_plan_buffer b[10];
    for (int i = 0; i < 10; i++)
        b[i] = (kelp_plan_buffer){.size = 1000, .first = i, .last = i + 1};
    size_t arena;
    TEST_OK(kelp_memory_plan(b, 10, &arena));
    assert_no_conflict(b, 10, arena);
    assert_int_equal(arena, 2 * 1024);
}

static void test_random_lifetimes(void **state)
{
    (void)state;
    uint64_t rng = 7;
    for (int round = 0; round < 50; round++) {
        int n = test_rand_int(&rng, 1, 60);
        kelp_plan_buffer *b = calloc((size_t)n, sizeof *b);
        size_t total = 0;
        for (int i = 0; i < n; i++) {
            int first = test_rand_int(&rng, 0, 40);
            b[i] = (kelp_plan_buffer){.size = (size_t)test_rand_int(&rng, 0, 5000), .first = first,
                                      .last = first + test_rand_int(&rng, 0, 10)};
            total += (b[i].size + 63) / 64 * 64;
        }
        size_t arena;
        TEST_OK(kelp_memory_plan(b, n, &arena));
        assert_no_conflict(b, n, arena);
        assert_true(arena <= total);
        free(b);
    }
}

static void test_all_alive_needs_the_sum(void **state)
{
    (void)state;
    kelp_plan_buffer b[3] = {{.size = 64, .first = 0, .last = 5}, {.size = 128, .first = 0, .last = 5},
                             {.size = 1, .first = 3, .last = 3}};
    size_t arena;
    TEST_OK(kelp_memory_plan(b, 3, &arena));
    assert_no_conflict(b, 3, arena);
    assert_int_equal(arena, 64 + 128 + 64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_reuses_memory),
        cmocka_unit_test(test_random_lifetimes),
        cmocka_unit_test(test_all_alive_needs_the_sum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
