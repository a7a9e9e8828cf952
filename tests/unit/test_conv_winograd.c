/* The Winograd F(2x2, 3x3) kernels called directly, at channel counts the layer tests do not reach: against the
 * naive double-precision convolution (plain and flipped, stored and accumulated) and weight gradient, independent of
 * the thread count, and the shapes they accept. test_conv covers it through the layer, with gradient checks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"
#include "ref/ref_conv.h"
#include "ref/test_util.h"

/* Sums of up to 2304 products of U(-1, 1) values reach about 20; float rounding in the transforms and the
 * channel sums stays near 1e-5 of that, a wrong tap or channel is off by O(1). */
#define RTOL 1e-4
#define ATOL 1e-4

static kelp_conv_desc conv3x3(int n, int h, int w, int c, int k, int pad)
{
    kelp_conv_desc d = {.n = n, .h = h, .w = w, .c = c, .k = k, .r = 3, .s = 3, .stride_h = 1, .stride_w = 1,
                        .pad_h = pad, .pad_w = pad, .dil_h = 1, .dil_w = 1, .groups = 1};
    d.oh = h + 2 * pad - 2;
    d.ow = w + 2 * pad - 2;
    return d;
}

static size_t in_len(const kelp_conv_desc *d) { return (size_t)d->n * d->h * d->w * d->c; }
static size_t out_len(const kelp_conv_desc *d) { return (size_t)d->n * d->oh * d->ow * d->k; }
static size_t weights_len(const kelp_conv_desc *d) { return (size_t)d->k * 9 * d->c; }

static float *random_floats(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    test_fill_uniform(x, n, seed, -1.0f, 1.0f);
    return x;
}

/* Runs the kernel with its own workspace. */
static void winograd(int threads, const kelp_conv_desc *d, const float *x, const float *w, bool flipped,
                     const float *bias, bool accumulate, float *y)
{
    float *ws = malloc(kelp_cpu_conv_winograd_workspace(threads, d));
    assert_non_null(ws);
    const kelp_conv_epilogue ep = {.shift = bias};
    kelp_cpu_conv_winograd(threads, d, x, w, flipped, accumulate ? NULL : &ep, accumulate, y, ws);
    free(ws);
}

static void check_forward(const kelp_conv_desc *d, uint64_t seed, const char *what)
{
    float *x = random_floats(in_len(d), seed), *w = random_floats(weights_len(d), seed + 1);
    float *bias = random_floats((size_t)d->k, seed + 2), *y = malloc(out_len(d) * sizeof *y);
    double *ref = malloc(out_len(d) * sizeof *ref);
    assert_non_null(y);
    assert_non_null(ref);
    for (size_t i = 0; i < out_len(d); i++) /* poisoned: every output must be written */
        y[i] = NAN;
    winograd(2, d, x, w, false, bias, false, y);
    ref_conv2d_forward(d, x, w, bias, ref);
    test_assert_close(y, ref, out_len(d), RTOL, ATOL, what);
    free(x), free(w), free(bias), free(y), free(ref);
}

static void test_forward_matches_reference(void **state)
{
    (void)state;
    kelp_conv_desc a = conv3x3(2, 20, 22, 64, 64, 1); /* ResNet's 64-channel layers, 32-channel register tiles */
    check_forward(&a, 1, "64 -> 64, padding 1");
    kelp_conv_desc b = conv3x3(1, 16, 15, 256, 256, 1); /* the largest channel product it takes (C*K), odd width */
    check_forward(&b, 2, "256 -> 256, padding 1");
    kelp_conv_desc c = conv3x3(3, 9, 12, 16, 80, 0); /* 16-channel register tiles, blocks of 64 tiles and a rest */
    check_forward(&c, 3, "16 -> 80, no padding");
}

/* The flipped convolution (an input gradient) against the reference run on explicitly flipped weights, adding to
 * what the output held. */
static void test_flipped_accumulates(void **state)
{
    (void)state;
    kelp_conv_desc d = conv3x3(2, 11, 13, 48, 32, 1);
    /* w as the original convolution's weights (d.c output channels over d.k input channels): (C, 3, 3, K) */
    float *x = random_floats(in_len(&d), 10), *w = random_floats(weights_len(&d), 11);
    float *y = random_floats(out_len(&d), 12), *wf = malloc(weights_len(&d) * sizeof *wf);
    double *ref = malloc(out_len(&d) * sizeof *ref);
    assert_non_null(wf);
    assert_non_null(ref);
    for (int k = 0; k < d.k; k++)
        for (int r = 0; r < 3; r++)
            for (int s = 0; s < 3; s++)
                for (int c = 0; c < d.c; c++)
                    wf[(((size_t)k * 3 + r) * 3 + s) * d.c + c] = w[(((size_t)c * 3 + (2 - r)) * 3 + (2 - s)) * d.k + k];
    ref_conv2d_forward(&d, x, wf, NULL, ref);
    for (size_t i = 0; i < out_len(&d); i++)
        ref[i] += y[i];
    winograd(2, &d, x, w, true, NULL, true, y);
    test_assert_close(y, ref, out_len(&d), RTOL, ATOL, "flipped, accumulated");
    free(x), free(w), free(y), free(wf), free(ref);
}

/* dw[k][r][s][c] = sum over images and output pixels of dy[k] x[pixel + (r, s) - pad][c], in double. */
static void ref_weight_gradient(const kelp_conv_desc *d, const float *x, const float *dy, double *dw)
{
    memset(dw, 0, weights_len(d) * sizeof *dw);
    for (int n = 0; n < d->n; n++)
        for (int oh = 0; oh < d->oh; oh++)
            for (int ow = 0; ow < d->ow; ow++)
                for (int r = 0; r < 3; r++)
                    for (int s = 0; s < 3; s++) {
                        const int ih = oh - d->pad_h + r, iw = ow - d->pad_w + s;
                        if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w)
                            continue;
                        const float *xp = x + (((size_t)n * d->h + ih) * d->w + iw) * d->c;
                        const float *g = dy + (((size_t)n * d->oh + oh) * d->ow + ow) * d->k;
                        for (int k = 0; k < d->k; k++)
                            for (int c = 0; c < d->c; c++)
                                dw[(((size_t)k * 3 + r) * 3 + s) * d->c + c] += (double)g[k] * xp[c];
                    }
}

/* The weight gradient added to what dw held, across several blocks of tiles and half blocks at the edges. */
static void check_weight_gradient(const kelp_conv_desc *d, uint64_t seed, const char *what)
{
    float *x = random_floats(in_len(d), seed), *dy = random_floats(out_len(d), seed + 1);
    float *dw = random_floats(weights_len(d), seed + 2);
    double *ref = malloc(weights_len(d) * sizeof *ref);
    assert_non_null(ref);
    ref_weight_gradient(d, x, dy, ref);
    for (size_t i = 0; i < weights_len(d); i++)
        ref[i] += dw[i];
    float *ws = malloc(kelp_cpu_conv_winograd_filter_workspace(d));
    assert_non_null(ws);
    kelp_cpu_conv_winograd_backward_filter(2, d, x, dy, dw, ws);
    /* sums over up to 2 * 15 * 17 = 510 pixels: |dw| reaches about 10 */
    test_assert_close(dw, ref, weights_len(d), RTOL, ATOL, what);
    free(x), free(dy), free(dw), free(ref), free(ws);
}

static void test_weight_gradient_matches_reference(void **state)
{
    (void)state;
    kelp_conv_desc a = conv3x3(2, 15, 17, 64, 32, 1);
    check_weight_gradient(&a, 30, "weight gradient 64 -> 32, padding 1");
    kelp_conv_desc b = conv3x3(3, 12, 10, 16, 48, 0);
    check_weight_gradient(&b, 31, "weight gradient 16 -> 48, no padding");
    kelp_conv_desc c = conv3x3(1, 9, 11, 32, 16, 2);
    check_weight_gradient(&c, 32, "weight gradient 32 -> 16, padding 2");
}

static void test_same_bits_for_any_thread_count(void **state)
{
    (void)state;
    kelp_conv_desc d = conv3x3(2, 14, 18, 32, 64, 1);
    float *x = random_floats(in_len(&d), 20), *w = random_floats(weights_len(&d), 21);
    float *bias = random_floats((size_t)d.k, 22);
    float *one = malloc(out_len(&d) * sizeof *one), *many = malloc(out_len(&d) * sizeof *many);
    assert_non_null(one);
    assert_non_null(many);
    winograd(1, &d, x, w, false, bias, false, one);
    for (int threads = 2; threads <= 3; threads++) {
        winograd(threads, &d, x, w, false, bias, false, many);
        assert_memory_equal(one, many, out_len(&d) * sizeof *one);
    }
    /* the weight gradient, reduced over tiles, too */
    float *dw_one = calloc(weights_len(&d), sizeof(float)), *dw_many = calloc(weights_len(&d), sizeof(float));
    float *ws = malloc(kelp_cpu_conv_winograd_filter_workspace(&d));
    assert_non_null(dw_one);
    assert_non_null(dw_many);
    assert_non_null(ws);
    kelp_cpu_conv_winograd_backward_filter(1, &d, x, one, dw_one, ws);
    for (int threads = 2; threads <= 3; threads++) {
        memset(dw_many, 0, weights_len(&d) * sizeof(float));
        kelp_cpu_conv_winograd_backward_filter(threads, &d, x, one, dw_many, ws);
        assert_memory_equal(dw_one, dw_many, weights_len(&d) * sizeof(float));
    }
    free(x), free(w), free(bias), free(one), free(many), free(dw_one), free(dw_many), free(ws);
}

static void test_accepted_shapes(void **state)
{
    (void)state;
    kelp_conv_desc d = conv3x3(16, 56, 56, 64, 64, 1);
    assert_true(kelp_cpu_conv_winograd_fits(&d));
    kelp_conv_desc strided = d;
    strided.stride_h = strided.stride_w = 2;
    strided.oh = strided.ow = 28;
    assert_false(kelp_cpu_conv_winograd_fits(&strided));
    kelp_conv_desc dilated = d;
    dilated.dil_h = dilated.dil_w = 2;
    dilated.oh = dilated.ow = 54;
    assert_false(kelp_cpu_conv_winograd_fits(&dilated));
    kelp_conv_desc grouped = d;
    grouped.groups = 2;
    assert_false(kelp_cpu_conv_winograd_fits(&grouped));
    kelp_conv_desc odd_channels = conv3x3(16, 56, 56, 80, 72, 1);
    assert_false(kelp_cpu_conv_winograd_fits(&odd_channels));
    kelp_conv_desc few_channels = conv3x3(16, 56, 56, 32, 64, 1); /* the transforms would cost more */
    assert_false(kelp_cpu_conv_winograd_fits(&few_channels));
    kelp_conv_desc small_output = conv3x3(64, 7, 7, 64, 64, 1); /* a third of the 2x2 blocks half empty */
    assert_false(kelp_cpu_conv_winograd_fits(&small_output));
    kelp_conv_desc wide = conv3x3(16, 7, 7, 512, 512, 1); /* U would not stay in cache */
    assert_false(kelp_cpu_conv_winograd_fits(&wide));
    kelp_conv_desc few_tiles = conv3x3(1, 7, 7, 64, 64, 1); /* 16 blocks of 2x2 */
    assert_false(kelp_cpu_conv_winograd_fits(&few_tiles));
    kelp_conv_desc five = d;
    five.r = five.s = 5;
    five.pad_h = five.pad_w = 2;
    assert_false(kelp_cpu_conv_winograd_fits(&five));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_reference),
        cmocka_unit_test(test_flipped_accumulates),
        cmocka_unit_test(test_weight_gradient_matches_reference),
        cmocka_unit_test(test_same_bits_for_any_thread_count),
        cmocka_unit_test(test_accepted_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
