/* Known-answer tests of Philox4x32-10 against Random123's reference vectors (kat_vectors), and of the helpers that
 * dropout and augmentation build on it. */
#include "ref/test_util.h"

#include "kernels/ops/rng.h"

static void assert_block(const uint32_t counter[4], const uint32_t key[2], const uint32_t want[4])
{
    kelp_philox_out got = kelp_philox4x32_10(counter, key);
    for (int i = 0; i < 4; i++)
        if (got.v[i] != want[i])
            fail_msg("philox4x32-10 word %d: got 0x%08x, want 0x%08x", i, got.v[i], want[i]);
}

static void test_zero_counter_zero_key(void **state)
{
    (void)state;
    const uint32_t counter[4] = {0, 0, 0, 0}, key[2] = {0, 0};
    const uint32_t want[4] = {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8};
    assert_block(counter, key, want);
}

static void test_all_ones(void **state)
{
    (void)state;
    const uint32_t counter[4] = {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, key[2] = {0xffffffff, 0xffffffff};
    const uint32_t want[4] = {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd};
    assert_block(counter, key, want);
}

static void test_pi_digits(void **state)
{
    (void)state;
    const uint32_t counter[4] = {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, key[2] = {0xa4093822, 0x299f31d0};
    const uint32_t want[4] = {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1};
    assert_block(counter, key, want);
}

/* The 64-bit helper packs the counter into words 0 and 1 (low first) and the seed into the key. */
static void test_packed_helper_matches_full_counter(void **state)
{
    (void)state;
    uint64_t seed = 0x299f31d0a4093822ull, counter = 0x85a308d3243f6a88ull;
    const uint32_t c[4] = {0x243f6a88, 0x85a308d3, 0, 0}, k[2] = {0xa4093822, 0x299f31d0};
    kelp_philox_out packed = kelp_philox4x32(seed, counter), full = kelp_philox4x32_10(c, k);
    for (int i = 0; i < 4; i++)
        assert_int_equal(packed.v[i], full.v[i]);
}

static void test_uniform_range_and_word_mapping(void **state)
{
    (void)state;
    assert_true(kelp_uniform01(0u) == 0.0f);
    assert_true(kelp_uniform01(0xffffffffu) < 1.0f);
    uint64_t seed = 42;
    for (uint64_t i = 0; i < 64; i++) {
        kelp_philox_out block = kelp_philox4x32(seed, i / 4);
        float u = kelp_rng_uniform(seed, i);
        assert_true(u == kelp_uniform01(block.v[i % 4]));
        assert_true(u >= 0.0f && u < 1.0f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero_counter_zero_key),
        cmocka_unit_test(test_all_ones),
        cmocka_unit_test(test_pi_digits),
        cmocka_unit_test(test_packed_helper_matches_full_counter),
        cmocka_unit_test(test_uniform_range_and_word_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
