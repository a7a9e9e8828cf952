/* conv2d and conv_transpose2d: forward against naive double-precision loops, backward against finite differences,
 * accumulation, field and shape errors, and the CPU kernels' pointwise fast path against their general path. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref/layer_harness.h"
#include "ref/ref_conv.h"

/* Both layers are linear in their input and in each parameter, so central differences carry no truncation error:
 * what is left is float rounding in the forward sums (~1e-7 of |out|), divided by 2*eps. eps = 1e-2 keeps that
 * near 1e-5, and tol = 1e-3 still fails any wrong tap or channel, which is off by O(1). */
#define GRAD_EPS 1e-2f
#define GRAD_TOL 1e-3
#define GRAD_SAMPLES 20
#define FWD_RTOL 1e-4
#define FWD_ATOL 1e-5

typedef struct conv_case {
    int n, h, w, c, k;
    int r, s;
    int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
    int groups;
    bool bias;
    int outpad_h, outpad_w; /* conv_transpose2d only */
} conv_case;

static const conv_case conv_cases[] = {
    {1, 7, 9, 3, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, 0, 0},     /* plain 3x3 */
    {3, 7, 9, 4, 6, 3, 3, 2, 2, 1, 1, 1, 1, 2, true, 0, 0},     /* groups 2, stride 2 */
    {2, 8, 7, 5, 3, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, 0, 0},     /* pointwise fast path */
    {1, 4, 6, 8, 4, 1, 1, 1, 1, 0, 0, 2, 2, 2, false, 0, 0},    /* pointwise, grouped; dilation is moot */
    {3, 9, 7, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 6, true, 0, 0},     /* depthwise */
    {1, 11, 10, 4, 4, 3, 3, 2, 2, 2, 2, 2, 2, 4, false, 0, 0},  /* depthwise, stride 2, dilation 2 */
    {1, 6, 5, 70, 70, 3, 3, 1, 1, 1, 1, 1, 1, 70, true, 0, 0},  /* depthwise over two channel chunks */
    {2, 7, 9, 3, 6, 3, 3, 1, 1, 1, 1, 1, 1, 3, true, 0, 0},     /* depthwise multiplier 2: general path */
    {1, 7, 9, 2, 5, 2, 3, 3, 2, 0, 1, 1, 1, 1, false, 0, 0},    /* rectangular kernel and stride */
    {3, 10, 9, 4, 8, 3, 1, 1, 2, 2, 0, 2, 1, 2, true, 0, 0},    /* rectangular dilation and padding */
    {2, 6, 5, 3, 2, 1, 1, 2, 2, 0, 0, 1, 1, 1, true, 0, 0},     /* 1x1 stride 2: general path */
    {1, 5, 5, 2, 3, 5, 5, 1, 1, 0, 0, 1, 1, 1, true, 0, 0},     /* kernel covers the input: 1x1 output */
    {2, 7, 9, 2, 3, 7, 7, 3, 3, 3, 3, 1, 1, 1, true, 0, 0},     /* 7x7 stem, stride 3, padding 3 */
    {1, 5, 4, 70, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, 0, 0},    /* col2im over two channel chunks */
    {2, 8, 7, 3, 5, 3, 3, 1, 1, 2, 2, 2, 2, 1, true, 0, 0},     /* stride 1, dilation 2: flipped input gradient */
    {1, 5, 6, 3, 2, 3, 3, 1, 1, 3, 3, 1, 1, 1, true, 0, 0},     /* padding beyond the kernel: col2im */
    {2, 5, 7, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, 0, 0},   /* direct: 32-channel tiles, flipped 16 */
    {1, 7, 6, 32, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, false, 0, 0},  /* direct, stride 2 (col2im input gradient) */
    {2, 12, 12, 16, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, true, 0, 0}, /* ... whose columns outgrow the direct workspace */
    {2, 6, 7, 16, 16, 3, 2, 1, 1, 2, 1, 2, 1, 1, true, 0, 0},   /* direct, dilation 2, rectangular */
    {1, 5, 5, 16, 48, 3, 3, 1, 1, 0, 0, 1, 1, 1, false, 0, 0},  /* direct, no padding, 3 tiles of 16 */
    {1, 15, 17, 64, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, 0, 0}, /* Winograd: odd sizes, half 2x2 blocks at the edges */
    {1, 18, 19, 64, 80, 3, 3, 1, 1, 0, 0, 1, 1, 1, false, 0, 0},/* Winograd, no padding (input gradient padded 2) */
    {1, 13, 14, 64, 64, 3, 3, 1, 1, 2, 2, 1, 1, 1, true, 0, 0}, /* Winograd forward, padding 2 */
};

static const conv_case transpose_cases[] = {
    {1, 4, 5, 3, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, true, 1, 1},     /* stride 2 with output_padding */
    {3, 5, 4, 4, 6, 3, 3, 1, 1, 0, 0, 1, 1, 2, true, 0, 0},     /* groups 2 */
    {2, 5, 4, 3, 5, 3, 2, 1, 1, 1, 0, 1, 1, 1, true, 0, 0},     /* stride 1: forward is a flipped convolution */
    {2, 3, 4, 3, 2, 2, 3, 3, 2, 0, 1, 1, 1, 1, false, 2, 1},    /* rectangular, stride 3x2 */
    {1, 4, 4, 4, 4, 3, 3, 1, 1, 1, 1, 2, 2, 4, true, 1, 1},     /* depthwise, output_padding < dilation only */
    {2, 5, 5, 6, 3, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, 0, 0},     /* 1x1: pointwise adjoint */
    {1, 3, 4, 2, 3, 1, 1, 1, 1, 0, 0, 2, 2, 1, true, 1, 1},     /* 1x1 with output_padding: general adjoint */
    {2, 4, 3, 4, 2, 2, 2, 2, 2, 0, 0, 1, 1, 1, true, 0, 0},     /* U-Net up-sampling */
    {1, 3, 5, 2, 4, 4, 4, 2, 3, 2, 1, 1, 2, 2, false, 0, 1},    /* padding that crops, dilation 2 */
};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void case_json(const conv_case *c, bool transpose, char *buf, size_t len)
{
    int used = snprintf(buf, len,
                        "{\"out_channels\":%d,\"kernel_size\":[%d,%d],\"stride\":[%d,%d],\"padding\":[%d,%d],"
                        "\"dilation\":[%d,%d],\"groups\":%d,\"bias\":%s",
                        c->k, c->r, c->s, c->stride_h, c->stride_w, c->pad_h, c->pad_w, c->dil_h, c->dil_w,
                        c->groups, c->bias ? "true" : "false");
    if (transpose)
        used += snprintf(buf + used, len - (size_t)used, ",\"output_padding\":[%d,%d]", c->outpad_h, c->outpad_w);
    snprintf(buf + used, len - (size_t)used, "}");
}

/* Output sizes written out again here, independently of the layers. */
static kelp_conv_desc case_desc(const conv_case *c, bool transpose)
{
    kelp_conv_desc d = {.n = c->n, .h = c->h, .w = c->w, .c = c->c, .k = c->k, .r = c->r, .s = c->s,
                        .stride_h = c->stride_h, .stride_w = c->stride_w, .pad_h = c->pad_h, .pad_w = c->pad_w,
                        .dil_h = c->dil_h, .dil_w = c->dil_w, .groups = c->groups};
    if (transpose) {
        d.oh = (c->h - 1) * c->stride_h - 2 * c->pad_h + c->dil_h * (c->r - 1) + c->outpad_h + 1;
        d.ow = (c->w - 1) * c->stride_w - 2 * c->pad_w + c->dil_w * (c->s - 1) + c->outpad_w + 1;
    } else {
        d.oh = (c->h + 2 * c->pad_h - c->dil_h * (c->r - 1) - 1) / c->stride_h + 1;
        d.ow = (c->w + 2 * c->pad_w - c->dil_w * (c->s - 1) - 1) / c->stride_w + 1;
    }
    return d;
}

static void setup_case(test_layer *t, const conv_case *c, bool transpose, uint64_t seed)
{
    char json[512];
    case_json(c, transpose, json, sizeof json);
    kelp_shape in = kelp_shape4(c->n, c->h, c->w, c->c);
    test_layer_setup(t, transpose ? "conv_transpose2d" : "conv2d", json, 1, &in, true, seed);
}

static void check_forward(test_layer *t, const conv_case *c, bool transpose, int index)
{
    kelp_conv_desc d = case_desc(c, transpose);
    d.n = (int)t->in[0].shape.dims[0];
    kelp_shape want = kelp_shape4(d.n, d.oh, d.ow, c->k);
    char got_s[64], want_s[64];
    if (!kelp_shape_equal(&t->out.shape, &want))
        fail_msg("case %d: output shape %s, want %s", index, kelp_shape_str(&t->out.shape, got_s, sizeof got_s),
                 kelp_shape_str(&want, want_s, sizeof want_s));
    /* poisoned: forward must write every output, not add to what was there */
    for (int64_t i = 0; i < kelp_shape_numel(&t->out.shape); i++)
        test_f32(&t->out)[i] = NAN;
    test_layer_forward(t);
    size_t n = (size_t)kelp_shape_numel(&want);
    double *ref = malloc(n * sizeof *ref);
    assert_non_null(ref);
    const float *bias = c->bias ? test_f32(&t->param[1]) : NULL;
    if (transpose)
        ref_conv_transpose2d_forward(&d, test_f32(&t->in[0]), test_f32(&t->param[0]), bias, ref);
    else
        ref_conv2d_forward(&d, test_f32(&t->in[0]), test_f32(&t->param[0]), bias, ref);
    char what[64];
    snprintf(what, sizeof what, "%s case %d output", t->type->name, index);
    test_assert_close(test_f32(&t->out), ref, n, FWD_RTOL, FWD_ATOL, what);
    free(ref);
}

static void run_forward_cases(const conv_case *cases, int count, bool transpose)
{
    for (int i = 0; i < count; i++) {
        test_layer t;
        setup_case(&t, &cases[i], transpose, 100 + (uint64_t)i);
        check_forward(&t, &cases[i], transpose, i);
        test_layer_teardown(&t);
    }
}

static void run_gradcheck_cases(const conv_case *cases, int count, bool transpose)
{
    for (int i = 0; i < count; i++) {
        test_layer t;
        setup_case(&t, &cases[i], transpose, 200 + (uint64_t)i);
        test_layer_gradcheck(&t, GRAD_EPS, GRAD_TOL, GRAD_SAMPLES);
        test_layer_teardown(&t);
    }
}

static void test_conv2d_forward(void **state)
{
    (void)state;
    run_forward_cases(conv_cases, COUNT(conv_cases), false);
}

static void test_conv2d_gradcheck(void **state)
{
    (void)state;
    run_gradcheck_cases(conv_cases, COUNT(conv_cases), false);
}

static void test_conv_transpose2d_forward(void **state)
{
    (void)state;
    run_forward_cases(transpose_cases, COUNT(transpose_cases), true);
}

static void test_conv_transpose2d_gradcheck(void **state)
{
    (void)state;
    run_gradcheck_cases(transpose_cases, COUNT(transpose_cases), true);
}

/* A random valid configuration: depthwise one time in four, otherwise 1 to 3 groups of 1 to 3 channels each way. */
static conv_case random_case(uint64_t *rng, bool transpose)
{
    conv_case c = {0};
    c.n = test_rand_int(rng, 1, 3);
    c.groups = test_rand_int(rng, 1, 3);
    c.c = c.groups * test_rand_int(rng, 1, 3);
    c.k = c.groups * test_rand_int(rng, 1, 3);
    if (test_rand_int(rng, 0, 3) == 0)
        c.groups = c.k = c.c = test_rand_int(rng, 1, 5);
    c.r = test_rand_int(rng, 1, 4);
    c.s = test_rand_int(rng, 1, 4);
    c.stride_h = test_rand_int(rng, 1, 3);
    c.stride_w = test_rand_int(rng, 1, 3);
    c.pad_h = test_rand_int(rng, 0, 2);
    c.pad_w = test_rand_int(rng, 0, 2);
    c.dil_h = test_rand_int(rng, 1, 2);
    c.dil_w = test_rand_int(rng, 1, 2);
    c.bias = test_rand_int(rng, 0, 1);
    /* large enough that the kernel fits (conv2d) and the output is not empty (transposed) */
    c.h = c.dil_h * (c.r - 1) + 1 + test_rand_int(rng, 0, 6);
    c.w = c.dil_w * (c.s - 1) + 1 + test_rand_int(rng, 0, 6);
    if (transpose) {
        int most_h = (c.stride_h > c.dil_h ? c.stride_h : c.dil_h) - 1;
        int most_w = (c.stride_w > c.dil_w ? c.stride_w : c.dil_w) - 1;
        c.outpad_h = test_rand_int(rng, 0, most_h);
        c.outpad_w = test_rand_int(rng, 0, most_w);
        int room_h = ((c.h - 1) * c.stride_h + c.dil_h * (c.r - 1) + c.outpad_h) / 2;
        int room_w = ((c.w - 1) * c.stride_w + c.dil_w * (c.s - 1) + c.outpad_w) / 2;
        c.pad_h = c.pad_h < room_h ? c.pad_h : room_h;
        c.pad_w = c.pad_w < room_w ? c.pad_w : room_w;
    }
    return c;
}

static void run_random_cases(bool transpose, uint64_t seed)
{
    uint64_t rng = seed;
    for (int i = 0; i < 40; i++) {
        conv_case c = random_case(&rng, transpose);
        test_layer t;
        setup_case(&t, &c, transpose, seed + (uint64_t)i);
        check_forward(&t, &c, transpose, 1000 + i);
        test_layer_gradcheck(&t, GRAD_EPS, GRAD_TOL, 8);
        test_layer_teardown(&t);
    }
}

static void test_conv2d_random_shapes(void **state)
{
    (void)state;
    run_random_cases(false, 77);
}

static void test_conv_transpose2d_random_shapes(void **state)
{
    (void)state;
    run_random_cases(true, 88);
}

/* The general, pointwise and depthwise kernels, and the transposed layer's scratch-then-add input gradient. */
static void test_backward_accumulates(void **state)
{
    (void)state;
    const int conv_picks[] = {1, 2, 4, 7};
    for (int i = 0; i < COUNT(conv_picks); i++) {
        test_layer t;
        setup_case(&t, &conv_cases[conv_picks[i]], false, 300 + (uint64_t)i);
        ref_assert_backward_accumulates(&t);
        test_layer_teardown(&t);
    }
    const int transpose_picks[] = {0, 3, 4};
    for (int i = 0; i < COUNT(transpose_picks); i++) {
        test_layer t;
        setup_case(&t, &transpose_cases[transpose_picks[i]], true, 400 + (uint64_t)i);
        ref_assert_backward_accumulates(&t);
        test_layer_teardown(&t);
    }
}

/* A graph plans for its largest batch and may run a smaller one: descriptors must come from the run-time tensors. */
static void test_smaller_batch_than_planned(void **state)
{
    (void)state;
    const conv_case *cases[] = {&conv_cases[1], &conv_cases[4], &transpose_cases[1]};
    for (int i = 0; i < COUNT(cases); i++) {
        bool transpose = i == 2;
        test_layer t;
        setup_case(&t, cases[i], transpose, 500 + (uint64_t)i);
        ref_set_batch(&t, 2);
        check_forward(&t, cases[i], transpose, i);
        test_layer_gradcheck(&t, GRAD_EPS, GRAD_TOL, GRAD_SAMPLES);
        test_layer_teardown(&t);
    }
}

static void test_conv2d_params(void **state)
{
    (void)state;
    const char *json = "{\"out_channels\":8,\"kernel_size\":[3,2],\"stride\":2,\"padding\":1,\"dilation\":1,"
                       "\"groups\":2,\"bias\":true,\"init\":\"kaiming_normal_fan_out\"}";
    kelp_shape in = kelp_shape4(2, 9, 7, 6);
    test_layer t;
    test_layer_setup(&t, "conv2d", json, 1, &in, true, 1);
    ref_assert_fields_listed(t.type, json);
    kelp_shape out = kelp_shape4(2, 5, 4, 8);
    assert_true(kelp_shape_equal(&t.out_shape, &out));
    assert_int_equal(t.n_params, 2);
    kelp_shape w = kelp_shape4(8, 3, 3, 2), w_internal = kelp_shape4(8, 3, 2, 3);
    assert_string_equal(t.spec[0].suffix, "weight");
    assert_true(kelp_shape_equal(&t.spec[0].shape, &w));
    assert_true(t.spec[0].ohwi);
    assert_true(kelp_shape_equal(&t.param[0].shape, &w_internal));
    assert_int_equal(t.spec[0].init, KELP_INIT_KAIMING_NORMAL_FAN_OUT);
    assert_int_equal(t.spec[0].fan_in, 3 * 3 * 2);
    assert_int_equal(t.spec[0].fan_out, 8 * 3 * 2);
    assert_string_equal(t.spec[1].suffix, "bias");
    assert_int_equal(t.spec[1].shape.ndim, 1);
    assert_int_equal(t.spec[1].shape.dims[0], 8);
    assert_int_equal(t.spec[1].init, KELP_INIT_UNIFORM_FAN_IN);
    assert_int_equal(t.spec[1].fan_in, 3 * 3 * 2);
    test_layer_teardown(&t);

    test_layer_setup(&t, "conv2d", "{\"out_channels\":4,\"kernel_size\":1,\"bias\":false}", 1, &in, true, 1);
    assert_int_equal(t.n_params, 1);
    assert_int_equal(t.spec[0].init, KELP_INIT_UNIFORM_FAN_IN);
    assert_int_equal(t.spec[0].fan_in, 6);
    test_layer_teardown(&t);
}

static void test_conv_transpose2d_params(void **state)
{
    (void)state;
    const char *json = "{\"out_channels\":6,\"kernel_size\":[3,2],\"stride\":2,\"padding\":1,\"output_padding\":1,"
                       "\"dilation\":1,\"groups\":2,\"bias\":true,\"init\":\"default\"}";
    kelp_shape in = kelp_shape4(1, 4, 5, 4);
    test_layer t;
    test_layer_setup(&t, "conv_transpose2d", json, 1, &in, true, 1);
    ref_assert_fields_listed(t.type, json);
    kelp_shape out = kelp_shape4(1, 8, 9, 6);
    assert_true(kelp_shape_equal(&t.out_shape, &out));
    kelp_shape w = kelp_shape4(4, 3, 3, 2), w_internal = kelp_shape4(4, 3, 2, 3);
    assert_true(kelp_shape_equal(&t.spec[0].shape, &w));
    assert_true(t.spec[0].ohwi);
    assert_true(kelp_shape_equal(&t.param[0].shape, &w_internal));
    assert_int_equal(t.spec[0].fan_in, 3 * 3 * 2);
    assert_int_equal(t.spec[0].fan_out, 4 * 3 * 2);
    assert_int_equal(t.spec[1].shape.dims[0], 6);
    assert_int_equal(t.spec[1].fan_in, 3 * 3 * 2);
    test_layer_teardown(&t);
}

static kelp_status try_layer(const char *type, const char *json, kelp_shape in)
{
    test_layer t;
    kelp_status s = test_layer_try_setup(&t, type, json, 1, &in, true, 1);
    test_layer_teardown(&t);
    return s;
}

static void test_conv2d_invalid(void **state)
{
    (void)state;
    kelp_shape in = kelp_shape4(1, 3, 3, 6);
    TEST_FAILS_WITH(try_layer("conv2d", "{\"kernel_size\":3}", in), KELP_ERR_FORMAT, "out_channels");
    TEST_FAILS_WITH(try_layer("conv2d", "{\"out_channels\":4}", in), KELP_ERR_FORMAT, "kernel_size");
    TEST_FAILS_WITH(try_layer("conv2d", "{\"out_channels\":4,\"kernel_size\":[3]}", in), KELP_ERR_FORMAT,
                    "kernel_size");
    TEST_FAILS_WITH(try_layer("conv2d", "{\"out_channels\":4,\"kernel_size\":3,\"stride\":0}", in), KELP_ERR_FORMAT,
                    "stride");
    TEST_FAILS_WITH(try_layer("conv2d", "{\"out_channels\":4,\"kernel_size\":3,\"init\":\"xavier\"}", in),
                    KELP_ERR_FORMAT, "init");
    TEST_FAILS_WITH(try_layer("conv2d", "{\"out_channels\":6,\"kernel_size\":1,\"groups\":4}", in), KELP_ERR_FORMAT,
                    "groups");
    TEST_FAILS_WITH(try_layer("conv2d", "{\"out_channels\":8,\"kernel_size\":1,\"groups\":4}", in), KELP_ERR_SHAPE,
                    "[1,3,3,6]: 6 channels are not divisible by groups 4");
    TEST_FAILS_WITH(try_layer("conv2d", "{\"out_channels\":4,\"kernel_size\":5}", in), KELP_ERR_SHAPE,
                    "[1,3,3,6]: kernel 5x5 with dilation 1x1 is larger than the padded input");
    TEST_FAILS_WITH(try_layer("conv2d", "{\"out_channels\":4,\"kernel_size\":3,\"dilation\":[1,2]}", in),
                    KELP_ERR_SHAPE, "larger than the padded input");
    TEST_FAILS_WITH(try_layer("conv2d", "{\"out_channels\":4,\"kernel_size\":1}", kelp_shape2(3, 6)), KELP_ERR_SHAPE,
                    "rank-4");
    /* the same kernel fits once padded */
    TEST_OK(try_layer("conv2d", "{\"out_channels\":4,\"kernel_size\":5,\"padding\":1}", in));
}

static void test_conv_transpose2d_invalid(void **state)
{
    (void)state;
    kelp_shape in = kelp_shape4(1, 3, 3, 6);
    TEST_FAILS_WITH(try_layer("conv_transpose2d", "{\"kernel_size\":3}", in), KELP_ERR_FORMAT, "out_channels");
    TEST_FAILS_WITH(try_layer("conv_transpose2d", "{\"out_channels\":4,\"kernel_size\":3,\"stride\":2,"
                                                  "\"output_padding\":2}",
                              in),
                    KELP_ERR_FORMAT, "output_padding");
    TEST_FAILS_WITH(try_layer("conv_transpose2d", "{\"out_channels\":4,\"kernel_size\":3,\"output_padding\":[0,1]}",
                              in),
                    KELP_ERR_FORMAT, "output_padding");
    TEST_FAILS_WITH(try_layer("conv_transpose2d", "{\"out_channels\":4,\"kernel_size\":3,"
                                                  "\"init\":\"kaiming_normal_fan_out\"}",
                              in),
                    KELP_ERR_FORMAT, "init");
    TEST_FAILS_WITH(try_layer("conv_transpose2d", "{\"out_channels\":8,\"kernel_size\":3,\"groups\":4}", in),
                    KELP_ERR_SHAPE, "not divisible by groups");
    TEST_FAILS_WITH(try_layer("conv_transpose2d", "{\"out_channels\":4,\"kernel_size\":1,\"padding\":2}", in),
                    KELP_ERR_SHAPE, "[1,3,3,6]: output would be -1x-1");
    /* output_padding may reach the stride when it stays below the dilation, as in PyTorch */
    TEST_OK(try_layer("conv_transpose2d", "{\"out_channels\":4,\"kernel_size\":3,\"dilation\":2,"
                                          "\"output_padding\":1}",
                      in));
}

static void fill(float *x, size_t n, uint64_t seed) { test_fill_uniform(x, n, seed, -1.0f, 1.0f); }

/* dst (N,H,W,C) = the interior of src (N,H+2,W+2,C) */
static void crop_border(int n, int h, int w, int c, const float *src, float *dst)
{
    for (int b = 0; b < n; b++)
        for (int i = 0; i < h; i++)
            memcpy(dst + (((size_t)b * h + i) * w) * c, src + (((size_t)b * (h + 2) + i + 1) * (w + 2) + 1) * c,
                   (size_t)w * c * sizeof(float));
}

/* A 1x1 convolution padded by one computes the pointwise one in its interior (bias alone on the border), reads the
 * same inputs in backward, and takes the general im2col path: the two paths must agree. */
static void test_pointwise_path_matches_general_path(void **state)
{
    (void)state;
    kelp_backend *be = test_cpu_backend();
    enum { N = 2, H = 5, W = 6, C = 8, K = 6, G = 2 };
    kelp_conv_desc fast = {N, H, W, C, K, 1, 1, 1, 1, 0, 0, 1, 1, G, H, W, KELP_F32};
    kelp_conv_desc general = {N, H, W, C, K, 1, 1, 1, 1, 1, 1, 1, 1, G, H + 2, W + 2, KELP_F32};
    size_t fast_bytes = 1, ws_bytes = 0;
    TEST_OK(be->iface->conv2d_workspace(be, &fast, &fast_bytes));
    assert_int_equal(fast_bytes, 0);
    TEST_OK(be->iface->conv2d_workspace(be, &general, &ws_bytes));
    assert_true(ws_bytes >= (size_t)N * (H + 2) * (W + 2) * C * sizeof(float));

    const size_t nx = (size_t)N * H * W * C, ny = (size_t)N * H * W * K, nyp = (size_t)N * (H + 2) * (W + 2) * K;
    const size_t nw = (size_t)K * (C / G);
    float *x = malloc(nx * sizeof(float)), *w = malloc(nw * sizeof(float)), *b = malloc(K * sizeof(float));
    float *y_fast = malloc(ny * sizeof(float)), *y_general = malloc(nyp * sizeof(float));
    float *interior = malloc(ny * sizeof(float)), *dy = malloc(nyp * sizeof(float));
    float *dx_fast = malloc(nx * sizeof(float)), *dx_general = malloc(nx * sizeof(float));
    float *dw_fast = malloc(nw * sizeof(float)), *dw_general = malloc(nw * sizeof(float));
    float *db_fast = malloc(K * sizeof(float)), *db_general = malloc(K * sizeof(float));
    float *ws = malloc(ws_bytes);
    fill(x, nx, 1);
    fill(w, nw, 2);
    fill(b, K, 3);

    TEST_OK(be->iface->conv2d_forward(be, &fast, x, w, b, y_fast, NULL));
    TEST_OK(be->iface->conv2d_forward(be, &general, x, w, b, y_general, ws));
    crop_border(N, H, W, K, y_general, interior);
    test_assert_close_f(interior, y_fast, ny, 1e-6, 1e-6, "padded 1x1 interior");
    test_assert_close_f(y_general, b, K, 1e-6, 0.0, "padded 1x1 corner (bias only)");

    /* dy on the border only meets padding, so it must not reach dx; dx starts non-zero to check that both add */
    fill(dy, nyp, 4);
    crop_border(N, H, W, K, dy, interior);
    fill(dx_fast, nx, 5);
    fill(dx_general, nx, 5);
    TEST_OK(be->iface->conv2d_backward_data(be, &fast, interior, w, dx_fast, NULL));
    TEST_OK(be->iface->conv2d_backward_data(be, &general, dy, w, dx_general, ws));
    test_assert_close_f(dx_general, dx_fast, nx, 1e-6, 1e-6, "dx");

    /* with the border of dy zeroed, the padded conv's weight and bias gradients equal the pointwise ones */
    memset(dy, 0, nyp * sizeof(float));
    for (int bi = 0; bi < N; bi++)
        for (int i = 0; i < H; i++)
            memcpy(dy + (((size_t)bi * (H + 2) + i + 1) * (W + 2) + 1) * K, interior + (((size_t)bi * H + i) * W) * K,
                   (size_t)W * K * sizeof(float));
    fill(dw_fast, nw, 6);
    fill(dw_general, nw, 6);
    fill(db_fast, K, 7);
    fill(db_general, K, 7);
    TEST_OK(be->iface->conv2d_backward_filter(be, &fast, x, interior, dw_fast, db_fast, NULL));
    TEST_OK(be->iface->conv2d_backward_filter(be, &general, x, dy, dw_general, db_general, ws));
    test_assert_close_f(dw_general, dw_fast, nw, 1e-5, 1e-6, "dw");
    test_assert_close_f(db_general, db_fast, K, 1e-5, 1e-6, "db");

    float *buffers[] = {x, w, b, y_fast, y_general, interior, dy, dx_fast, dx_general, dw_fast, dw_general,
                        db_fast, db_general, ws};
    for (int i = 0; i < COUNT(buffers); i++)
        free(buffers[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d_forward),
        cmocka_unit_test(test_conv2d_gradcheck),
        cmocka_unit_test(test_conv_transpose2d_forward),
        cmocka_unit_test(test_conv_transpose2d_gradcheck),
        cmocka_unit_test(test_conv2d_random_shapes),
        cmocka_unit_test(test_conv_transpose2d_random_shapes),
        cmocka_unit_test(test_backward_accumulates),
        cmocka_unit_test(test_smaller_batch_than_planned),
        cmocka_unit_test(test_conv2d_params),
        cmocka_unit_test(test_conv_transpose2d_params),
        cmocka_unit_test(test_conv2d_invalid),
        cmocka_unit_test(test_conv_transpose2d_invalid),
        cmocka_unit_test(test_pointwise_path_matches_general_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
