/* upsample (nearest, bilinear align_corners=False) against the naive double reference and hand-computed PyTorch
 * results, with finite-difference gradient checks and the field rules. */
#include <stdio.h>
#include <stdlib.h>

#include "kernels/ops/upsample.h"
#include "ref/layer_harness.h"
#include "ref/ref_spatial.h"

static int64_t numel(const kelp_tensor *t) { return kelp_shape_numel(&t->shape); }

typedef struct upsample_case {
    int n, h, w, c;
    const char *fields; /* scale_factor or size, without mode */
} upsample_case;

/* Upscale, non-integer and downscale factors, pairs, sizes; 2.1 on H=3 gives 6 = 2H without a factor of 2, and 1.1
 * on 5 gives the input size: PyTorch's special cases. */
static const upsample_case cases[] = {
    {1, 5, 7, 3, "\"scale_factor\":2"},
    {3, 5, 7, 2, "\"scale_factor\":1.5"},
    {1, 7, 9, 4, "\"scale_factor\":0.5"},
    {3, 4, 3, 17, "\"scale_factor\":[1.5,3]"},
    {1, 3, 5, 2, "\"scale_factor\":2.1"},
    {3, 5, 5, 3, "\"scale_factor\":1.1"},
    {1, 6, 6, 2, "\"scale_factor\":[0.7,2.5]"},
    {3, 4, 3, 3, "\"size\":[7,5]"},
    {1, 7, 5, 2, "\"size\":[3,2]"},
    {1, 1, 1, 5, "\"size\":[3,4]"},
};

static ref_upsample ref_of(const test_layer *t, bool bilinear, const cJSON *json)
{
    ref_upsample u = {.bilinear = bilinear,
                      .n = (int)t->in_shape[0].dims[0],
                      .h = (int)t->in_shape[0].dims[1],
                      .w = (int)t->in_shape[0].dims[2],
                      .c = (int)t->in_shape[0].dims[3],
                      .oh = (int)t->out_shape.dims[1],
                      .ow = (int)t->out_shape.dims[2]};
    const cJSON *sf = cJSON_GetObjectItemCaseSensitive(json, "scale_factor");
    if (sf) {
        u.has_scale = true;
        u.scale_h = cJSON_IsArray(sf) ? cJSON_GetArrayItem(sf, 0)->valuedouble : sf->valuedouble;
        u.scale_w = cJSON_IsArray(sf) ? cJSON_GetArrayItem(sf, 1)->valuedouble : sf->valuedouble;
    }
    return u;
}

static int expected_size(int in, const cJSON *json, int axis)
{
    const cJSON *sf = cJSON_GetObjectItemCaseSensitive(json, "scale_factor");
    if (!sf)
        return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(json, "size"), axis)->valueint;
    double f = cJSON_IsArray(sf) ? cJSON_GetArrayItem(sf, axis)->valuedouble : sf->valuedouble;
    return (int)(in * f); /* floor for positive values */
}

static void check_case(const upsample_case *k, const char *mode, uint64_t seed)
{
    char json[160], what[256];
    snprintf(json, sizeof json, "{\"mode\":\"%s\",%s}", mode, k->fields);
    snprintf(what, sizeof what, "upsample %s on [%d,%d,%d,%d]", json, k->n, k->h, k->w, k->c);
    kelp_shape shape = kelp_shape4(k->n, k->h, k->w, k->c);
    test_layer t;
    test_layer_setup(&t, "upsample", json, 1, &shape, true, seed);
    kelp_shape want = kelp_shape4(k->n, expected_size(k->h, t.json, 0), expected_size(k->w, t.json, 1), k->c);
    if (!kelp_shape_equal(&t.out_shape, &want))
        fail_msg("%s: output [%lld,%lld,%lld,%lld], want [%lld,%lld,%lld,%lld]", what,
                 (long long)t.out_shape.dims[0], (long long)t.out_shape.dims[1], (long long)t.out_shape.dims[2],
                 (long long)t.out_shape.dims[3], (long long)want.dims[0], (long long)want.dims[1],
                 (long long)want.dims[2], (long long)want.dims[3]);
    ref_upsample u = ref_of(&t, mode[0] == 'b', t.json);

    test_layer_forward(&t);
    double *y = malloc((size_t)numel(&t.out) * sizeof(double));
    ref_upsample_forward(&u, test_f32(&t.in[0]), y);
    test_assert_close(test_f32(&t.out), y, (size_t)numel(&t.out), 1e-5, 1e-6, what);

    test_layer_backward(&t);
    double *dx = malloc((size_t)numel(&t.in[0]) * sizeof(double));
    ref_upsample_backward(&u, test_f32(&t.dout), dx);
    test_assert_close(test_f32(&t.din[0]), dx, (size_t)numel(&t.in[0]), 1e-5, 1e-5, what);
    free(y);
    free(dx);
    test_layer_teardown(&t);
}

static void test_nearest_matches_reference(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i], "nearest", 10 + i);
}

static void test_bilinear_matches_reference(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i], "bilinear", 30 + i);
}

/* Values of F.interpolate on a single row (rows of a 1-pixel-high image are copied). */
static void check_row(const char *json, int w, const float *x, int ow, const float *want)
{
    kelp_shape shape = kelp_shape4(1, 1, w, 1);
    test_layer t;
    test_layer_setup(&t, "upsample", json, 1, &shape, false, 3);
    assert_int_equal(t.out_shape.dims[2], ow);
    for (int i = 0; i < w; i++)
        test_f32(&t.in[0])[i] = x[i];
    test_layer_forward(&t);
    test_assert_close_f(test_f32(&t.out), want, (size_t)ow, 1e-6, 1e-7, json);
    test_layer_teardown(&t);
}

static void test_known_values(void **state)
{
    (void)state;
    const float two[] = {0, 1}, four[] = {0, 1, 2, 3};
    check_row("{\"mode\":\"bilinear\",\"scale_factor\":[1,2]}", 2, two, 4, (const float[]){0, 0.25f, 0.75f, 1});
    check_row("{\"mode\":\"bilinear\",\"scale_factor\":[1,0.5]}", 4, four, 2, (const float[]){0.5f, 2.5f});
    check_row("{\"mode\":\"nearest\",\"scale_factor\":[1,1.5]}", 2, two, 3, (const float[]){0, 0, 1});
    check_row("{\"mode\":\"nearest\",\"size\":[1,3]}", 4, four, 3, (const float[]){0, 1, 2});
    /* PyTorch's nearest_idx: an output twice the input takes dst / 2 even for a factor of 2.1 (floor(dst / 2.1)
     * would give 0, 0, 0, 1), and an equal size copies even for a factor of 1.2 */
    check_row("{\"mode\":\"nearest\",\"scale_factor\":[1,2.1]}", 2, two, 4, (const float[]){0, 0, 1, 1});
    check_row("{\"mode\":\"nearest\",\"scale_factor\":[1,1.2]}", 4, four, 4, (const float[]){0, 1, 2, 3});
    check_row("{\"mode\":\"bilinear\",\"scale_factor\":[1,1.2]}", 4, four, 4, (const float[]){0, 1, 2, 3});
}

static void test_default_mode_is_nearest(void **state)
{
    (void)state;
    const float two[] = {3, 5};
    check_row("{\"scale_factor\":2}", 2, two, 4, (const float[]){3, 3, 5, 5});
}

static void test_upsample_gradcheck(void **state)
{
    (void)state;
    const char *configs[] = {"{\"mode\":\"bilinear\",\"scale_factor\":1.5}", "{\"mode\":\"bilinear\",\"size\":[3,4]}",
                             "{\"mode\":\"nearest\",\"scale_factor\":[2,0.6]}"};
    for (int i = 0; i < 3; i++) {
        kelp_shape shape = kelp_shape4(3, 5, 6, 3);
        test_layer t;
        test_layer_setup(&t, "upsample", configs[i], 1, &shape, true, 60 + (uint64_t)i);
        test_layer_gradcheck(&t, 0.01f, 1e-3, 100);
        test_layer_teardown(&t);
    }
}

static void test_upsample_smaller_batch(void **state)
{
    (void)state;
    kelp_shape shape = kelp_shape4(3, 4, 5, 2);
    test_layer t;
    test_layer_setup(&t, "upsample", "{\"mode\":\"bilinear\",\"scale_factor\":1.5}", 1, &shape, true, 70);
    t.in[0].shape.dims[0] = 1;
    t.out.shape.dims[0] = 1;
    t.dout.shape.dims[0] = 1;
    test_layer_forward(&t);
    ref_upsample u = ref_of(&t, true, t.json);
    u.n = 1;
    int64_t per_image = numel(&t.out);
    double *y = malloc((size_t)per_image * sizeof(double));
    ref_upsample_forward(&u, test_f32(&t.in[0]), y);
    test_assert_close(test_f32(&t.out), y, (size_t)per_image, 1e-5, 1e-6, "batch 1 of 3");
    for (int64_t i = per_image; i < 3 * per_image; i++)
        assert_true(test_f32(&t.out)[i] == 0.0f);
    free(y);
    test_layer_teardown(&t);
}

static void test_backward_accumulates(void **state)
{
    (void)state;
    const char *json[] = {"{\"mode\":\"nearest\",\"scale_factor\":1.5}",
                          "{\"mode\":\"bilinear\",\"scale_factor\":0.7}"};
    for (int i = 0; i < 2; i++) {
        kelp_shape shape = kelp_shape4(2, 5, 6, 3);
        test_layer t;
        test_layer_setup(&t, "upsample", json[i], 1, &shape, true, 140 + (uint64_t)i);
        test_layer_check_accumulates(&t);
        test_layer_teardown(&t);
    }
}

/* kelp_upsample_readers, which both backward passes search with (the CUDA one per dx element, the CPU one per
 * input row), must give exactly the outputs that read each input: one missed would drop a gradient term on the GPU
 * (and on the CPU). Checked against a scan of every output, for both kinds, every size pair up to 24 -> 40, with
 * the scale of a `size` (in / out), of a `scale_factor` (1 / f, output floor(in * f)) and, so that the search's
 * monotonicity is exercised beyond the layer's pairs, arbitrary scales with any output size. */
static void check_readers(kelp_upsample_kind kind, int in, int out, float scale)
{
    for (int i = 0; i < in; i++) {
        int lo, hi;
        kelp_upsample_readers(kind, i, scale, in, out, &lo, &hi);
        for (int dst = 0; dst < out; dst++) {
            int low = kelp_upsample_low_src(kind, dst, scale, in, out);
            int high = kelp_upsample_high_src(kind, dst, scale, in, out);
            bool reads = low == i || high == i, in_range = dst >= lo && dst <= hi;
            if (reads != in_range)
                fail_msg("%s in %d out %d scale %.9g: input %d, output %d (taps %d, %d) %s, readers [%d, %d]",
                         kind == KELP_UPSAMPLE_NEAREST ? "nearest" : "bilinear", in, out, (double)scale, i, dst,
                         low, high, reads ? "reads it" : "does not read it", lo, hi);
        }
        if (lo > hi + 1)
            fail_msg("in %d out %d scale %.9g: input %d, readers [%d, %d] cross", in, out, (double)scale, i, lo, hi);
    }
}

static void test_readers_match_scan(void **state)
{
    (void)state;
    const double factors[] = {0.3, 0.5, 0.7, 0.75, 1.0, 1.1, 4.0 / 3.0, 1.5, 1.7, 2.0, 2.1, 2.5, 3.0, 3.3, 4.0};
    const float scales[] = {0.05f, 0.1f, 0.3333333f, 0.49f, 0.5f, 0.51f, 0.9999f, 1.0f, 1.0001f, 1.9f, 2.0f, 3.7f};
    for (int k = 0; k < 2; k++) {
        kelp_upsample_kind kind = k == 0 ? KELP_UPSAMPLE_NEAREST : KELP_UPSAMPLE_BILINEAR;
        for (int in = 1; in <= 24; in++) {
            for (int out = 1; out <= 40; out++) {
                check_readers(kind, in, out, (float)in / (float)out);
                for (size_t s = 0; s < sizeof scales / sizeof scales[0]; s++)
                    check_readers(kind, in, out, scales[s]);
            }
            for (size_t f = 0; f < sizeof factors / sizeof factors[0]; f++) {
                int out = (int)(in * factors[f]);
                if (out >= 1)
                    check_readers(kind, in, out, (float)(1.0 / factors[f]));
            }
        }
        /* large axes, where float coordinates are coarsest */
        const int big[][2] = {{511, 1024}, {1000, 1500}, {1024, 512}, {777, 1999}, {2048, 4097}};
        for (size_t b = 0; b < sizeof big / sizeof big[0]; b++)
            check_readers(kind, big[b][0], big[b][1], (float)big[b][0] / (float)big[b][1]);
    }
}

static void expect_setup_fails(const char *json, kelp_shape shape, kelp_status status, const char *needle)
{
    test_layer t;
    TEST_FAILS_WITH(test_layer_try_setup(&t, "upsample", json, 1, &shape, true, 1), status, needle);
    test_layer_teardown(&t);
}

static void test_upsample_invalid(void **state)
{
    (void)state;
    kelp_shape img = kelp_shape4(1, 5, 5, 2);
    expect_setup_fails("{\"scale_factor\":2,\"size\":[10,10]}", img, KELP_ERR_FORMAT, "exactly one");
    expect_setup_fails("{\"mode\":\"nearest\"}", img, KELP_ERR_FORMAT, "missing field 'scale_factor' or 'size'");
    expect_setup_fails("{\"mode\":\"bicubic\",\"scale_factor\":2}", img, KELP_ERR_FORMAT, "mode");
    expect_setup_fails("{\"mode\":3,\"scale_factor\":2}", img, KELP_ERR_FORMAT, "mode");
    expect_setup_fails("{\"scale_factor\":0}", img, KELP_ERR_FORMAT, "scale_factor");
    expect_setup_fails("{\"scale_factor\":-2}", img, KELP_ERR_FORMAT, "scale_factor");
    expect_setup_fails("{\"scale_factor\":[2,2,2]}", img, KELP_ERR_FORMAT, "scale_factor");
    expect_setup_fails("{\"scale_factor\":\"2\"}", img, KELP_ERR_FORMAT, "scale_factor");
    expect_setup_fails("{\"size\":[0,4]}", img, KELP_ERR_FORMAT, "size");
    expect_setup_fails("{\"size\":[2.5,4]}", img, KELP_ERR_FORMAT, "size");
    expect_setup_fails("{\"scale_factor\":0.1}", img, KELP_ERR_SHAPE, "empty output");
    expect_setup_fails("{\"scale_factor\":2}", kelp_shape2(3, 4), KELP_ERR_SHAPE, "rank 4");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nearest_matches_reference),
        cmocka_unit_test(test_bilinear_matches_reference),
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_default_mode_is_nearest),
        cmocka_unit_test(test_upsample_gradcheck),
        cmocka_unit_test(test_upsample_smaller_batch),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_readers_match_scan),
        cmocka_unit_test(test_upsample_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
