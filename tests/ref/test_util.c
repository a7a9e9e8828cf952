#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void test_fails_with_(kelp_status got, kelp_status want, const char *needle, const char *what)
{
    if (got == KELP_OK)
        fail_msg("%s succeeded; expected %s containing \"%s\"", what, kelp_status_name(want), needle);
    if (got != want)
        fail_msg("%s failed with %s (\"%s\"); expected %s", what, kelp_status_name(got), kelp_last_error(),
                 kelp_status_name(want));
    if (needle && !strstr(kelp_last_error(), needle))
        fail_msg("%s: message \"%s\" does not mention \"%s\"", what, kelp_last_error(), needle);
}

uint64_t test_rand_u64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float test_rand_uniform(uint64_t *state, float lo, float hi)
{
    double u = (double)(test_rand_u64(state) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

int test_rand_int(uint64_t *state, int lo, int hi)
{
    return lo + (int)(test_rand_u64(state) % (uint64_t)(hi - lo + 1));
}

void test_fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++)
        x[i] = test_rand_uniform(&s, lo, hi);
}

void test_assert_close(const float *got, const double *want, size_t n, double rtol, double atol, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        if (isnan(g) || isnan(w) || fabs(g - w) > atol + rtol * fabs(w))
            fail_msg("%s[%zu]: got %.9g, want %.9g (rtol %g, atol %g)", what, i, g, w, rtol, atol);
    }
}

void test_assert_close_f(const float *got, const float *want, size_t n, double rtol, double atol, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        if (isnan(g) || isnan(w) || fabs(g - w) > atol + rtol * fabs(w))
            fail_msg("%s[%zu]: got %.9g, want %.9g (rtol %g, atol %g)", what, i, g, w, rtol, atol);
    }
}

kelp_backend *test_cpu_backend(void)
{
    static kelp_backend *be;
    if (!be)
        TEST_OK(kelp_backend_cpu_create(2, &be));
    return be;
}

const char *test_temp_path(const char *suffix)
{
    static char paths[8][256];
    static int next;
    char *p = paths[next++ % 8];
    const char *tmp = getenv("TMPDIR");
    snprintf(p, 256, "%s/kelp-test-%d-%d%s", tmp ? tmp : "/tmp", (int)getpid(), next, suffix ? suffix : "");
    return p;
}
