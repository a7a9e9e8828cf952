/* Shared helpers for the cmocka tests: deterministic random data, closeness checks, finite differences. */
#ifndef KELP_TEST_UTIL_H
#define KELP_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/backend.h"
#include "kelp/kelp.h"

/* Fails the test with kelp_last_error() when `expr` is not KELP_OK. */
#define TEST_OK(expr)                                                                                   \
    do {                                                                                                \
        kelp_status test_ok_s_ = (expr);                                                                \
        if (test_ok_s_ != KELP_OK)                                                                      \
            fail_msg("%s failed: %s: %s", #expr, kelp_status_name(test_ok_s_), kelp_last_error());      \
    } while (0)

/* Asserts a failure with `status` whose message contains `needle`. */
#define TEST_FAILS_WITH(expr, status, needle) test_fails_with_((expr), (status), (needle), #expr)
void test_fails_with_(kelp_status got, kelp_status want, const char *needle, const char *what);

/* splitmix64 stream: tests are reproducible from their seed. */
uint64_t test_rand_u64(uint64_t *state);
float test_rand_uniform(uint64_t *state, float lo, float hi);
void test_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi);
int test_rand_int(uint64_t *state, int lo, int hi); /* inclusive */

/* |got - want| <= atol + rtol * |want| for every element; NaN never passes; the message names `what` and index. */
void test_assert_close(const float *got, const double *want, size_t n, double rtol, double atol, const char *what);
void test_assert_close_f(const float *got, const float *want, size_t n, double rtol, double atol, const char *what);

/* The CPU backend with 2 threads, created once per test process. */
kelp_backend *test_cpu_backend(void);

/* A fresh temp file path ending in `suffix` (8 rotating static buffers); the caller creates and removes it. */
const char *test_temp_path(const char *suffix);

#endif
