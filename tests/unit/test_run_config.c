/* A checkpoint's run configuration (kelp_train_options_from_config), as resume, export and fine-tuning read it:
 * what it says over the caller's base, and a damaged one refused with the file named, never converted blindly (a
 * number beyond int's range was an undefined conversion). */
#include <string.h>

#include "engine/trainer.h"
#include "ref/test_util.h"

static void test_values_over_the_base(void **state)
{
    (void)state;
    kelp_train_options base, o;
    kelp_train_options_defaults(&base);
    void *keep = NULL;
    TEST_OK(kelp_train_options_from_config("{}", "a.ckpt", &base, &o, &keep));
    assert_int_equal(o.batch, 64);
    assert_string_equal(o.optimizer, "sgd");
    kelp_train_config_free(keep);
    TEST_OK(kelp_train_options_from_config("{\"batch\": 32, \"optimizer\": \"adamw\", \"epochs\": 3}", "a.ckpt", &base,
                                           &o, &keep));
    assert_int_equal(o.batch, 32);
    assert_int_equal(o.epochs, 3);
    assert_string_equal(o.optimizer, "adamw");
    kelp_train_config_free(keep);
}

static void test_damaged_configurations_are_refused(void **state)
{
    (void)state;
    kelp_train_options base, o;
    kelp_train_options_defaults(&base);
    void *keep = (void *)&base;
    const char *bad[] = {"{\"batch\": 1e300}", "{\"batch\": 0}", "{\"batch\": -5}", "{\"epochs\": 1e12}",
                         "{\"lr\": -1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        TEST_FAILS_WITH(kelp_train_options_from_config(bad[i], "damaged.ckpt", &base, &o, &keep),
                        KELP_ERR_INVALID_ARG, "damaged.ckpt: run configuration");
        assert_null(keep);
    }
    TEST_FAILS_WITH(kelp_train_options_from_config("[1]", "list.ckpt", &base, &o, &keep), KELP_ERR_FORMAT,
                    "list.ckpt");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_over_the_base),
        cmocka_unit_test(test_damaged_configurations_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
