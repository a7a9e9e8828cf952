/* bf16 and f16 conversions (kernels/ops/half.h): every 16-bit pattern through float and back, rounding to nearest
 * even checked against a reference that finds the nearest pattern by value (binary search, no bit tricks), at and
 * next to every tie, and f16 also against the compiler's _Float16 where it has one. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/ops/half.h"
#include "ref/test_util.h"

static float float_of(uint32_t bits) { return kelp_bits_float(bits); }

/* A non-negative pattern's value, reading the top pattern (infinity) as the next power of two: the bound that
 * decides between the largest finite value and infinity. */
static double bf16_value(unsigned bits)
{
    unsigned e = (bits >> 7) & 0xffu, m = bits & 0x7fu;
    return e == 0 ? ldexp(m, -133) : ldexp(128 + m, (int)e - 134);
}

static double f16_value(unsigned bits)
{
    unsigned e = (bits >> 10) & 0x1fu, m = bits & 0x3ffu;
    return e == 0 ? ldexp(m, -24) : ldexp(1024 + m, (int)e - 25);
}

/* The pattern nearest to v (not NaN), ties to the even pattern; `inf` is the infinity pattern. */
static uint16_t ref_round(float v, double (*value)(unsigned), unsigned inf)
{
    double a = fabs((double)v);
    unsigned sign = signbit(v) ? 0x8000u : 0u;
    unsigned lo = 0, hi = inf; /* the largest pattern whose value is at most a lies in [lo, hi] */
    while (lo < hi) {
        unsigned mid = (lo + hi + 1) / 2;
        if (value(mid) <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    if (lo == inf || value(lo) == a)
        return (uint16_t)(sign | lo);
    double below = a - value(lo), above = value(lo + 1) - a;
    unsigned pick = below < above ? lo : below > above ? lo + 1 : (lo & 1u) ? lo + 1 : lo;
    return (uint16_t)(sign | pick);
}

static bool bf16_is_nan(uint16_t h) { return (h & 0x7fffu) > 0x7f80u; }
static bool f16_is_nan(uint16_t h) { return (h & 0x7fffu) > 0x7c00u; }

static void expect_bf16(float v, uint16_t want)
{
    uint16_t got = kelp_bf16_from_float(v);
    if (got != want)
        fail_msg("bf16(%.9g = 0x%08x) = 0x%04x, want 0x%04x", (double)v, kelp_float_bits(v), got, want);
}

static void expect_f16(float v, uint16_t want)
{
    uint16_t got = kelp_f16_from_float(v);
    if (got != want)
        fail_msg("f16(%.9g = 0x%08x) = 0x%04x, want 0x%04x", (double)v, kelp_float_bits(v), got, want);
}

static void test_bf16_every_pattern_round_trips(void **state)
{
    (void)state;
    for (unsigned h = 0; h < 0x10000u; h++) {
        float f = kelp_bf16_to_float((uint16_t)h);
        if (kelp_float_bits(f) != h << 16)
            fail_msg("bf16 0x%04x widens to 0x%08x", h, kelp_float_bits(f));
        uint16_t back = kelp_bf16_from_float(f);
        if (bf16_is_nan((uint16_t)h)) {
            if (!isnan(f) || !bf16_is_nan(back) || (back & 0x8000u) != (h & 0x8000u))
                fail_msg("bf16 NaN 0x%04x came back as 0x%04x", h, back);
        } else if (back != h) {
            fail_msg("bf16 0x%04x came back as 0x%04x", h, back);
        }
    }
}

static void test_f16_every_pattern_round_trips(void **state)
{
    (void)state;
    for (unsigned h = 0; h < 0x10000u; h++) {
        float f = kelp_f16_to_float((uint16_t)h);
        uint16_t back = kelp_f16_from_float(f);
        unsigned mag = h & 0x7fffu;
        if (f16_is_nan((uint16_t)h)) {
            if (!isnan(f) || !f16_is_nan(back) || (back & 0x8000u) != (h & 0x8000u))
                fail_msg("f16 NaN 0x%04x came back as 0x%04x", h, back);
            continue;
        }
        double want = mag == 0x7c00u ? INFINITY : f16_value(mag);
        if ((double)fabsf(f) != want || (signbit(f) != 0) != ((h & 0x8000u) != 0))
            fail_msg("f16 0x%04x widens to %.9g, want %s%.9g", h, (double)f, (h & 0x8000u) ? "-" : "", want);
        if (back != h)
            fail_msg("f16 0x%04x came back as 0x%04x", h, back);
    }
}

/* Every float between two neighbouring bf16 values at fixed offsets of the 16 dropped bits: the tie (0x8000), one
 * float ulp either side of it, just above the lower value and just below the upper, both signs. The last gap
 * (0x7f7f to infinity) rounds to infinity from its tie on. */
static void test_bf16_rounds_to_nearest_even(void **state)
{
    (void)state;
    static const uint32_t lows[] = {0x0000, 0x0001, 0x3fff, 0x7fff, 0x8000, 0x8001, 0xc000, 0xffff};
    for (uint32_t h = 0; h < 0x7f80u; h++)
        for (size_t i = 0; i < sizeof lows / sizeof lows[0]; i++)
            for (uint32_t negative = 0; negative < 2; negative++) {
                float v = float_of(negative << 31 | h << 16 | lows[i]);
                expect_bf16(v, ref_round(v, bf16_value, 0x7f80u));
            }
}

/* Between every two neighbouring f16 values (the last pair being 65504 and 65536, infinity's bound): the lower
 * value, just above it, the midpoint and one float ulp either side of it, just below the upper value, and one
 * point in between. That covers ties in the subnormals (the smallest, 2^-25, rounds to zero) and the overflow to
 * infinity at 65520. */
static void test_f16_rounds_to_nearest_even(void **state)
{
    (void)state;
    for (unsigned h = 0; h < 0x7c00u; h++) {
        float lo = (float)f16_value(h), hi = (float)f16_value(h + 1), mid = (float)((f16_value(h) + f16_value(h + 1)) / 2);
        const float points[] = {lo, nextafterf(lo, INFINITY), nextafterf(mid, 0.0f), mid, nextafterf(mid, INFINITY),
                                nextafterf(hi, 0.0f), lo + (hi - lo) * 0.3f};
        for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
            expect_f16(points[i], ref_round(points[i], f16_value, 0x7c00u));
            expect_f16(-points[i], ref_round(-points[i], f16_value, 0x7c00u));
        }
    }
}

/* Values worked out by hand, independent of both implementations. */
static void test_known_values(void **state)
{
    (void)state;
    expect_bf16(1.0f, 0x3f80);
    expect_bf16(-2.0f, 0xc000);
    expect_bf16(3.14159265f, 0x4049);            /* 3.140625 */
    expect_bf16(1.0f + 0x1p-8f, 0x3f80);         /* tie: to 1.0, the even one */
    expect_bf16(1.0f + 3 * 0x1p-8f, 0x3f82);     /* tie: up to the even one */
    expect_bf16(1.0f + 0x1p-8f + 0x1p-23f, 0x3f81);
    expect_bf16(FLT_MAX, 0x7f80);                /* above the largest bf16 by more than half an ulp */
    expect_bf16(0x1p-133f, 0x0001);              /* the smallest bf16 subnormal */
    expect_bf16(0x1p-134f, 0x0000);              /* half of it: a tie, to zero */
    expect_bf16(-0.0f, 0x8000);
    expect_bf16(INFINITY, 0x7f80);
    expect_bf16(-INFINITY, 0xff80);

    expect_f16(1.0f, 0x3c00);
    expect_f16(-2.0f, 0xc000);
    expect_f16(0.1f, 0x2e66);
    expect_f16(1.0f / 3.0f, 0x3555);
    expect_f16(1.0f + 0x1p-11f, 0x3c00);        /* tie: to 1.0 */
    expect_f16(1.0f + 3 * 0x1p-11f, 0x3c02);    /* tie: up to the even one */
    expect_f16(65504.0f, 0x7bff);
    expect_f16(65519.99f, 0x7bff);
    expect_f16(65520.0f, 0x7c00);               /* tie between 65504 (odd) and 65536: infinity */
    expect_f16(-65520.0f, 0xfc00);
    expect_f16(1e10f, 0x7c00);
    expect_f16(FLT_MAX, 0x7c00);
    expect_f16(INFINITY, 0x7c00);
    expect_f16(0x1p-14f, 0x0400);               /* the smallest normal */
    expect_f16(0x1p-24f, 0x0001);               /* the smallest subnormal */
    expect_f16(0x1p-25f, 0x0000);               /* half of it: a tie, to zero */
    expect_f16(nextafterf(0x1p-25f, 1.0f), 0x0001);
    expect_f16(-nextafterf(0x1p-25f, 1.0f), 0x8001);
    expect_f16(3 * 0x1p-25f, 0x0002);           /* 1.5 subnormal ulps: a tie, up to the even one */
    expect_f16(0x1p-30f, 0x0000);
    expect_f16(FLT_TRUE_MIN, 0x0000);
    expect_f16(-FLT_TRUE_MIN, 0x8000);
    expect_f16(-0.0f, 0x8000);
    assert_float_equal(kelp_f16_to_float(0x7bff), 65504.0f, 0.0f);
    assert_float_equal(kelp_f16_to_float(0x0001), 0x1p-24f, 0.0f);
    assert_float_equal(kelp_f16_to_float(0x83ff), -0x3ffp-24f, 0.0f);
    assert_true(isinf(kelp_f16_to_float(0xfc00)) && kelp_f16_to_float(0xfc00) < 0.0f);
}

/* A NaN stays a NaN of the same sign, whatever its payload, also one only in the bits bf16 drops. */
static void test_nan_stays_nan(void **state)
{
    (void)state;
    static const uint32_t nans[] = {0x7fc00000u, 0x7f800001u, 0x7fa00000u, 0x7fffffffu, 0xffc00000u, 0xff800001u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        float v = float_of(nans[i]);
        uint16_t b = kelp_bf16_from_float(v), h = kelp_f16_from_float(v);
        uint16_t sign = (uint16_t)(nans[i] >> 16 & 0x8000u);
        if (!bf16_is_nan(b) || (b & 0x8000u) != sign)
            fail_msg("bf16 of NaN 0x%08x is 0x%04x", nans[i], b);
        if (!f16_is_nan(h) || (h & 0x8000u) != sign)
            fail_msg("f16 of NaN 0x%08x is 0x%04x", nans[i], h);
    }
}

#ifdef __FLT16_MAX__
static uint16_t compiler_f16(float v)
{
    _Float16 h = (_Float16)v;
    uint16_t bits;
    memcpy(&bits, &h, sizeof bits);
    return bits;
}

/* gcc's _Float16 conversions (libgcc's, round to nearest even) on every pattern and on random floats of every
 * magnitude. */
static void test_f16_matches_compiler(void **state)
{
    (void)state;
    for (unsigned h = 0; h < 0x10000u; h++) {
        uint16_t bits = (uint16_t)h;
        _Float16 c;
        memcpy(&c, &bits, sizeof c);
        float want = (float)c, got = kelp_f16_to_float(bits);
        if (isnan(want) ? !isnan(got) : memcmp(&want, &got, sizeof want) != 0)
            fail_msg("f16 0x%04x widens to %.9g, _Float16 to %.9g", h, (double)got, (double)want);
    }
    uint64_t seed = 7;
    for (int i = 0; i < 1 << 21; i++) {
        uint32_t u = (uint32_t)test_rand_u64(&seed);
        if (i & 1) /* half of them where f16 lives: exponents 2^-26 to 2^17 */
            u = (u & 0x807fffffu) | (uint32_t)(101 + (u >> 23) % 44) << 23;
        float v = float_of(u);
        uint16_t got = kelp_f16_from_float(v), want = compiler_f16(v);
        if (isnan(v) ? !f16_is_nan(got) : got != want)
            fail_msg("f16(%.9g = 0x%08x) = 0x%04x, _Float16 gives 0x%04x", (double)v, u, got, want);
    }
}
#endif

/* Element i of each storage type, without touching its neighbours. */
static void test_lowp_load_store(void **state)
{
    (void)state;
    const float v = 1.0f / 3.0f;
    float f[3] = {7.0f, 7.0f, 7.0f};
    kelp_lowp_store(KELP_F32, f, 1, v);
    assert_true(f[0] == 7.0f && f[1] == v && f[2] == 7.0f);
    assert_true(kelp_lowp_load(KELP_F32, f, 1) == v);

    uint16_t b[3] = {0x1111, 0x1111, 0x1111};
    kelp_lowp_store(KELP_BF16, b, 1, v);
    assert_true(b[0] == 0x1111 && b[1] == kelp_bf16_from_float(v) && b[2] == 0x1111);
    assert_true(kelp_lowp_load(KELP_BF16, b, 1) == kelp_bf16_to_float(b[1]));

    uint16_t h[3] = {0x1111, 0x1111, 0x1111};
    kelp_lowp_store(KELP_F16, h, 1, -v);
    assert_true(h[0] == 0x1111 && h[1] == 0xb555 && h[2] == 0x1111);
    assert_true(kelp_lowp_load(KELP_F16, h, 1) == kelp_f16_to_float(0xb555));

    assert_true(kelp_dtype_is_float(KELP_F32) && kelp_dtype_is_float(KELP_BF16) && kelp_dtype_is_float(KELP_F16));
    assert_false(kelp_dtype_is_float(KELP_U8) || kelp_dtype_is_float(KELP_I32) || kelp_dtype_is_float(KELP_I64));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_every_pattern_round_trips),
        cmocka_unit_test(test_f16_every_pattern_round_trips),
        cmocka_unit_test(test_bf16_rounds_to_nearest_even),
        cmocka_unit_test(test_f16_rounds_to_nearest_even),
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_nan_stays_nan),
#ifdef __FLT16_MAX__
        cmocka_unit_test(test_f16_matches_compiler),
#endif
        cmocka_unit_test(test_lowp_load_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
