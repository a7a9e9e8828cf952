/* io/augment: every op on tiny hand-made images with known results, masks and boxes moved exactly like the
 * pixels, determinism by (seed, key), eval mode, channel conversion and normalization. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/augment.h"
#include "ref/test_util.h"

enum { MAX_PIXELS = 64 * 64 * 4 };

typedef struct image {
    int h, w, c;
    uint8_t pixels[MAX_PIXELS];
    uint8_t mask[MAX_PIXELS];
} image;

/* Pixel (y, x, ch) = 10*y + x + 100*ch: every value names its place (sides below 10). */
static void fill_coded(image *im, int h, int w, int c)
{
    im->h = h, im->w = w, im->c = c;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            for (int ch = 0; ch < c; ch++)
                im->pixels[(y * w + x) * c + ch] = (uint8_t)(10 * y + x + 100 * ch);
            im->mask[y * w + x] = (uint8_t)(10 * y + x);
        }
}

static void fill_random(image *im, int h, int w, int c, uint64_t seed)
{
    im->h = h, im->w = w, im->c = c;
    for (int i = 0; i < h * w * c; i++)
        im->pixels[i] = (uint8_t)test_rand_u64(&seed);
    for (int i = 0; i < h * w; i++)
        im->mask[i] = (uint8_t)(test_rand_u64(&seed) % 5);
}

static kelp_augment_input input_of(const image *im)
{
    return (kelp_augment_input){.pixels = im->pixels, .h = im->h, .w = im->w, .c = im->c, .mask = im->mask};
}

typedef struct result {
    uint8_t pixels[MAX_PIXELS], mask[MAX_PIXELS];
    float boxes[16 * 4];
    int32_t labels[16];
    kelp_augment_output out;
} result;

static kelp_augment_output *output_of(result *r)
{
    memset(r->pixels, 0xEE, sizeof r->pixels);
    memset(r->mask, 0xEE, sizeof r->mask);
    r->out = (kelp_augment_output){.pixels = r->pixels, .mask = r->mask, .boxes = r->boxes,
                                   .box_labels = r->labels, .max_boxes = 16};
    return &r->out;
}

static void assert_bytes(const uint8_t *got, const uint8_t *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("%s[%zu]: got %d, want %d", what, i, got[i], want[i]);
}

static void assert_box(const float *got, float x1, float y1, float x2, float y2)
{
    const float want[4] = {x1, y1, x2, y2};
    test_assert_close_f(got, want, 4, 0, 1e-4, "box");
}

/* numpy.rot90(src, k), then fliplr, then flipud: the reference for turns and flips. */
static int d4_source_index(int k, bool hflip, bool vflip, int h, int w, int i, int j)
{
    int th = k % 2 ? w : h, tw = k % 2 ? h : w;
    if (vflip)
        i = th - 1 - i;
    if (hflip)
        j = tw - 1 - j;
    switch (k) {
    case 1:
        return j * w + (w - 1 - i);
    case 2:
        return (h - 1 - i) * w + (w - 1 - j);
    case 3:
        return (h - 1 - j) * w + i;
    default:
        return i * w + j;
    }
}

/* ------------------------------------------------------------------------------------------- exact geometry */

static void test_identity_plan_copies_exactly(void **state)
{
    (void)state;
    image im;
    fill_random(&im, 5, 7, 3, 11);
    const float boxes[8] = {1, 1, 4, 3, 0, 0, 7, 5};
    const int32_t labels[2] = {3, 4};
    kelp_augment_input in = input_of(&im);
    in.boxes = boxes, in.box_labels = labels, in.n_boxes = 2;
    kelp_augment_config cfg;
    kelp_augment_config_init(&cfg, 5, 7);
    kelp_augment_plan plan;
    kelp_augment_plan_identity(5, 7, &plan);
    result r;
    kelp_augment_output *out = output_of(&r);
    TEST_OK(kelp_augment_apply(&cfg, &plan, &in, out));
    assert_bytes(r.pixels, im.pixels, 5 * 7 * 3, "pixels");
    assert_bytes(r.mask, im.mask, 5 * 7, "mask");
    assert_int_equal(out->n_boxes, 2);
    assert_box(&r.boxes[0], 1, 1, 4, 3);
    assert_box(&r.boxes[4], 0, 0, 7, 5);
    assert_int_equal(r.labels[0], 3);
    assert_int_equal(r.labels[1], 4);
}

static void test_rot90_by_hand(void **state)
{
    (void)state;
    const uint8_t src[6] = {1, 2, 3, 4, 5, 6}; /* 2 rows, 3 columns */
    const uint8_t turned[6] = {3, 6, 2, 5, 1, 4}; /* numpy.rot90: 3 rows, 2 columns */
    const float box[4] = {2, 0, 3, 1};            /* the pixel holding 3 */
    const int32_t label = 9;
    kelp_augment_input in = {.pixels = src, .h = 2, .w = 3, .c = 1, .mask = src, .boxes = box,
                             .box_labels = &label, .n_boxes = 1};
    kelp_augment_config cfg;
    kelp_augment_config_init(&cfg, 3, 2);
    kelp_augment_plan plan;
    kelp_augment_plan_identity(2, 3, &plan);
    plan.quarter_turns = 1, plan.crop_w = 2, plan.crop_h = 3;
    result r;
    kelp_augment_output *out = output_of(&r);
    TEST_OK(kelp_augment_apply(&cfg, &plan, &in, out));
    assert_bytes(r.pixels, turned, 6, "pixels");
    assert_bytes(r.mask, turned, 6, "mask");
    assert_int_equal(out->n_boxes, 1);
    assert_box(r.boxes, 0, 0, 1, 1);
}

static void test_hflip_and_vflip_by_hand(void **state)
{
    (void)state;
    const uint8_t src[6] = {1, 2, 3, 4, 5, 6};
    const uint8_t hflipped[6] = {3, 2, 1, 6, 5, 4}, vflipped[6] = {4, 5, 6, 1, 2, 3};
    const float box[4] = {0, 0, 1, 2}; /* the left column */
    const int32_t label = 1;
    kelp_augment_input in = {.pixels = src, .h = 2, .w = 3, .c = 1, .mask = src, .boxes = box,
                             .box_labels = &label, .n_boxes = 1};
    kelp_augment_config cfg;
    kelp_augment_config_init(&cfg, 2, 3);
    kelp_augment_plan plan;
    kelp_augment_plan_identity(2, 3, &plan);
    result r;
    plan.hflip = true;
    TEST_OK(kelp_augment_apply(&cfg, &plan, &in, output_of(&r)));
    assert_bytes(r.pixels, hflipped, 6, "hflip pixels");
    assert_bytes(r.mask, hflipped, 6, "hflip mask");
    assert_box(r.boxes, 2, 0, 3, 2);
    plan.hflip = false, plan.vflip = true;
    TEST_OK(kelp_augment_apply(&cfg, &plan, &in, output_of(&r)));
    assert_bytes(r.pixels, vflipped, 6, "vflip pixels");
    assert_bytes(r.mask, vflipped, 6, "vflip mask");
    assert_box(r.boxes, 0, 0, 1, 2);
}

/* Every turn and flip combination against numpy's definition; the box around one pixel lands on its pixel. */
static void test_all_turns_and_flips_move_pixels_masks_and_boxes_together(void **state)
{
    (void)state;
    image im;
    fill_coded(&im, 3, 5, 2);
    const float box[4] = {3, 1, 4, 2}; /* pixel (y 1, x 3) */
    const int32_t label = 2;
    kelp_augment_input in = input_of(&im);
    in.boxes = box, in.box_labels = &label, in.n_boxes = 1;
    for (int k = 0; k < 4; k++)
        for (int flips = 0; flips < 4; flips++) {
            bool hf = flips & 1, vf = flips & 2;
            int th = k % 2 ? 5 : 3, tw = k % 2 ? 3 : 5;
            kelp_augment_config cfg;
            kelp_augment_config_init(&cfg, th, tw);
            kelp_augment_plan plan;
            kelp_augment_plan_identity(3, 5, &plan);
            plan.quarter_turns = k, plan.hflip = hf, plan.vflip = vf, plan.crop_w = tw, plan.crop_h = th;
            result r;
            kelp_augment_output *out = output_of(&r);
            TEST_OK(kelp_augment_apply(&cfg, &plan, &in, out));
            for (int i = 0; i < th; i++)
                for (int j = 0; j < tw; j++) {
                    int s = d4_source_index(k, hf, vf, 3, 5, i, j);
                    if (r.pixels[(i * tw + j) * 2] != im.pixels[s * 2] ||
                        r.pixels[(i * tw + j) * 2 + 1] != im.pixels[s * 2 + 1] || r.mask[i * tw + j] != im.mask[s])
                        fail_msg("k %d hflip %d vflip %d: output (%d, %d) is not source %d", k, hf, vf, i, j, s);
                }
            assert_int_equal(out->n_boxes, 1);
            int bx = (int)r.boxes[0], by = (int)r.boxes[1];
            assert_box(r.boxes, (float)bx, (float)by, bx + 1.0f, by + 1.0f);
            assert_int_equal(r.mask[by * tw + bx], 13);
        }
}

/* A 2x4 image into 8x8: scale 2, bars of two rows above and below; the mask upsamples by nearest, boxes scale. */
static void test_letterbox_pads_centers_and_scales_boxes(void **state)
{
    (void)state;
    image im;
    im.h = 2, im.w = 4, im.c = 1;
    memset(im.pixels, 100, 8);
    for (int i = 0; i < 8; i++)
        im.mask[i] = (uint8_t)i;
    const float boxes[8] = {0, 0, 4, 2, 1, 1, 2, 2};
    const int32_t labels[2] = {0, 1};
    kelp_augment_input in = input_of(&im);
    in.boxes = boxes, in.box_labels = labels, in.n_boxes = 2;
    kelp_augment_config cfg;
    kelp_augment_config_init(&cfg, 8, 8);
    cfg.fit = KELP_FIT_LETTERBOX, cfg.fill = 7;
    result r;
    kelp_augment_output *out = output_of(&r);
    TEST_OK(kelp_augment_sample(&cfg, 1, 2, &in, out));
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
            bool bar = y < 2 || y >= 6;
            int want_mask = bar ? 255 : im.mask[((y - 2) / 2) * 4 + x / 2];
            if (r.pixels[y * 8 + x] != (bar ? 7 : 100) || r.mask[y * 8 + x] != want_mask)
                fail_msg("(%d, %d): pixel %d mask %d, want %d and %d", y, x, r.pixels[y * 8 + x],
                         r.mask[y * 8 + x], bar ? 7 : 100, want_mask);
        }
    assert_int_equal(out->n_boxes, 2);
    assert_box(&r.boxes[0], 0, 2, 8, 6);
    assert_box(&r.boxes[4], 2, 4, 4, 6);

    /* Turned a quarter, the same image is 4x2: the bars become columns. */
    kelp_augment_plan plan;
    kelp_augment_plan_identity(2, 4, &plan);
    plan.quarter_turns = 1, plan.crop_w = 2, plan.crop_h = 4;
    TEST_OK(kelp_augment_apply(&cfg, &plan, &in, output_of(&r)));
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
            bool bar = x < 2 || x >= 6;
            if (r.pixels[y * 8 + x] != (bar ? 7 : 100) || (r.mask[y * 8 + x] == 255) != bar)
                fail_msg("turned (%d, %d): pixel %d mask %d", y, x, r.pixels[y * 8 + x], r.mask[y * 8 + x]);
        }
    assert_box(&r.boxes[0], 2, 0, 6, 8);
}

/* Stretching 4x4 to 2x2 with half-pixel centers averages each 2x2 block. */
static void test_resize_downscale_averages_blocks(void **state)
{
    (void)state;
    const uint8_t src[16] = {0, 4, 8, 8, 4, 0, 8, 8, 100, 100, 20, 24, 100, 100, 28, 32};
    const uint8_t want[4] = {2, 8, 100, 26};
    kelp_augment_input in = {.pixels = src, .h = 4, .w = 4, .c = 1};
    kelp_augment_config cfg;
    kelp_augment_config_init(&cfg, 2, 2);
    result r;
    kelp_augment_output *out = output_of(&r);
    out->mask = NULL, out->boxes = NULL;
    TEST_OK(kelp_augment_sample(&cfg, 0, 0, &in, out));
    assert_bytes(r.pixels, want, 4, "pixels");
}

static void test_pad_and_crop_shifts_within_bounds(void **state)
{
    (void)state;
    image im;
    fill_coded(&im, 6, 6, 1);
    const float box[4] = {1, 1, 5, 5};
    const int32_t label = 0;
    kelp_augment_input in = input_of(&im);
    in.boxes = box, in.box_labels = &label, in.n_boxes = 1;
    kelp_augment_config cfg;
    kelp_augment_config_init(&cfg, 6, 6);
    cfg.pad = 2, cfg.fill = 250;
    int seen[5][5] = {{0}};
    for (uint64_t key = 0; key < 400; key++) {
        kelp_augment_plan plan;
        TEST_OK(kelp_augment_plan_sample(&cfg, 5, key, 6, 6, &plan));
        assert_in_range(plan.shift_x + 2, 0, 4);
        assert_in_range(plan.shift_y + 2, 0, 4);
        seen[plan.shift_y + 2][plan.shift_x + 2]++;
        result r;
        kelp_augment_output *out = output_of(&r);
        TEST_OK(kelp_augment_apply(&cfg, &plan, &in, out));
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 6; x++) {
                int sy = y + plan.shift_y, sx = x + plan.shift_x;
                bool inside = sy >= 0 && sy < 6 && sx >= 0 && sx < 6;
                if (r.pixels[y * 6 + x] != (inside ? im.pixels[sy * 6 + sx] : 250) ||
                    r.mask[y * 6 + x] != (inside ? im.mask[sy * 6 + sx] : 255))
                    fail_msg("shift (%d, %d): output (%d, %d) wrong", plan.shift_x, plan.shift_y, y, x);
            }
        assert_int_equal(out->n_boxes, 1); /* a 4x4 box shifted by at most 2 keeps >= 25% and 2 px */
        assert_box(r.boxes, fmaxf(0, 1.0f - plan.shift_x), fmaxf(0, 1.0f - plan.shift_y),
                   fminf(6, 5.0f - plan.shift_x), fminf(6, 5.0f - plan.shift_y));
    }
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            if (!seen[i][j])
                fail_msg("shift (%d, %d) never drawn in 400 samples", j - 2, i - 2);
}

static void test_random_resized_crop_stays_inside(void **state)
{
    (void)state;
    kelp_augment_config cfg;
    kelp_augment_config_init(&cfg, 8, 8);
    cfg.random_resized_crop = true;
    bool varied = false;
    kelp_augment_plan first;
    for (uint64_t key = 0; key < 500; key++) {
        kelp_augment_plan plan;
        TEST_OK(kelp_augment_plan_sample(&cfg, 3, key, 40, 60, &plan));
        assert_true(plan.crop_w >= 1 && plan.crop_h >= 1);
        assert_true(plan.crop_x >= 0 && plan.crop_x + plan.crop_w <= 60);
        assert_true(plan.crop_y >= 0 && plan.crop_y + plan.crop_h <= 40);
        double area = (double)plan.crop_w * plan.crop_h / (40.0 * 60.0), ratio = (double)plan.crop_w / plan.crop_h;
        /* rounding each side to whole pixels moves area and ratio a little */
        assert_true(area >= 0.06 && area <= 1.0);
        assert_true(ratio >= 0.75 * 0.85 && ratio <= 4.0 / 3.0 / 0.85);
        if (key == 0)
            first = plan;
        varied |= plan.crop_x != first.crop_x || plan.crop_w != first.crop_w;
    }
    assert_true(varied);
}

/* A crop is a crop followed by a resize: at the crop's own size it copies the crop exactly. */
static void test_crop_copies_the_region(void **state)
{
    (void)state;
    image im;
    fill_coded(&im, 5, 6, 3);
    kelp_augment_config cfg;
    kelp_augment_config_init(&cfg, 2, 3);
    kelp_augment_plan plan;
    kelp_augment_plan_identity(5, 6, &plan);
    plan.crop_x = 2, plan.crop_y = 1, plan.crop_w = 3, plan.crop_h = 2;
    result r;
    kelp_augment_input in = input_of(&im);
    TEST_OK(kelp_augment_apply(&cfg, &plan, &in, output_of(&r)));
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++)
            for (int ch = 0; ch < 3; ch++)
                assert_int_equal(r.pixels[(y * 3 + x) * 3 + ch], 10 * (y + 1) + (x + 2) + 100 * ch);
}

/* When the crop is upscaled, the edge samples clamp to the crop, not to the image beyond it. */
static void test_crop_upscale_clamps_to_region(void **state)
{
    (void)state;
    image im;
    fill_coded(&im, 4, 4, 1);
    kelp_augment_config cfg;
    kelp_augment_config_init(&cfg, 4, 4);
    kelp_augment_plan plan;
    kelp_augment_plan_identity(4, 4, &plan);
    plan.crop_x = 1, plan.crop_y = 1, plan.crop_w = 2, plan.crop_h = 2;
    result r;
    kelp_augment_input in = input_of(&im);
    TEST_OK(kelp_augment_apply(&cfg, &plan, &in, output_of(&r)));
    assert_int_equal(r.pixels[0], 11);  /* corner: pixel (1, 1) alone */
    assert_int_equal(r.pixels[15], 22); /* corner: pixel (2, 2) alone */
    for (int i = 0; i < 16; i++)
        assert_in_range(r.pixels[i], 11, 22);
}

static void test_boxes_clipped_and_dropped(void **state)
{
    (void)state;
    image im;
    fill_coded(&im, 10, 10, 1);
    /* The crop starts at (3, 3): after it, box 0 is (-1,-1,5,5), clipped to (0,0,5,5) with 25/36 visible: kept;
     * box 1 is (-3,-3,1,2), clipped to (0,0,1,2) with 2/20 visible: dropped; box 2 is (1,1,3,3), inside: kept;
     * box 3 is (1,2,6,3), clipped to (1,2,5,3): 80% visible but 1 px high: dropped. */
    const float boxes[4 * 4] = {2, 2, 8, 8, 0, 0, 4, 5, 4, 4, 6, 6, 4, 5, 9, 6};
    const int32_t labels[4] = {10, 11, 12, 13};
    kelp_augment_input in = input_of(&im);
    in.boxes = boxes, in.box_labels = labels, in.n_boxes = 4;
    kelp_augment_config cfg;
    kelp_augment_config_init(&cfg, 5, 5);
    kelp_augment_plan plan;
    kelp_augment_plan_identity(10, 10, &plan);
    plan.crop_x = 3, plan.crop_y = 3, plan.crop_w = 5, plan.crop_h = 5;
    result r;
    kelp_augment_output *out = output_of(&r);
    TEST_OK(kelp_augment_apply(&cfg, &plan, &in, out));
    assert_int_equal(out->n_boxes, 2);
    assert_box(&r.boxes[0], 0, 0, 5, 5);
    assert_int_equal(r.labels[0], 10);
    assert_box(&r.boxes[4], 1, 1, 3, 3);
    assert_int_equal(r.labels[1], 12);

    out = output_of(&r);
    out->max_boxes = 1;
    TEST_FAILS_WITH(kelp_augment_apply(&cfg, &plan, &in, out), KELP_ERR_SHAPE, "more than 1 boxes");
}

/* ----------------------------------------------------------------------------------------------- photometric */

static void test_brightness_and_contrast_by_hand(void **state)
{
    (void)state;
    uint8_t src[4] = {50, 150, 50, 150}; /* mean 100 */
    kelp_augment_input in = {.pixels = src, .h = 2, .w = 2, .c = 1};
    kelp_augment_config cfg;
    kelp_augment_config_init(&cfg, 2, 2);
    kelp_augment_plan plan;
    kelp_augment_plan_identity(2, 2, &plan);
    result r;
    kelp_augment_output *out = output_of(&r);
    out->mask = NULL;
    plan.brightness = 1.2f;
    TEST_OK(kelp_augment_apply(&cfg, &plan, &in, out));
    const uint8_t brighter[4] = {60, 180, 60, 180};
    assert_bytes(r.pixels, brighter, 4, "brightness");
    plan.brightness = 1.0f, plan.contrast = 0.5f;
    TEST_OK(kelp_augment_apply(&cfg, &plan, &in, out));
    const uint8_t flatter[4] = {75, 125, 75, 125};
    assert_bytes(r.pixels, flatter, 4, "contrast");
    plan.contrast = 2.0f;
    TEST_OK(kelp_augment_apply(&cfg, &plan, &in, out));
    const uint8_t saturated[4] = {0, 200, 0, 200};
    assert_bytes(r.pixels, saturated, 4, "contrast, clamped");
    plan.brightness = 1.2f, plan.contrast = 0.5f; /* contrast around the brightened mean, 120 */
    TEST_OK(kelp_augment_apply(&cfg, &plan, &in, out));
    const uint8_t both[4] = {90, 150, 90, 150};
    assert_bytes(r.pixels, both, 4, "brightness then contrast");
}

static void stats(const uint8_t *p, int n, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++)
        s += p[i], s2 += (double)p[i] * p[i];
    *mean = s / n;
    *sd = sqrt(s2 / n - *mean * *mean);
}

/* Drawn factors stay in range; brightness scales the mean, contrast keeps it and scales the spread. */
static void test_sampled_jitter_moves_mean_and_spread(void **state)
{
    (void)state;
    image im;
    im.h = 16, im.w = 16, im.c = 3;
    uint64_t s = 9;
    for (int i = 0; i < 16 * 16 * 3; i++)
        im.pixels[i] = (uint8_t)(80 + test_rand_u64(&s) % 80); /* far from 0 and 255: no clamping */
    double mean0, sd0;
    stats(im.pixels, 16 * 16 * 3, &mean0, &sd0);
    kelp_augment_input in = input_of(&im);
    for (int which = 0; which < 2; which++) {
        kelp_augment_config cfg;
        kelp_augment_config_init(&cfg, 16, 16);
        if (which)
            cfg.contrast = 0.4f;
        else
            cfg.brightness = 0.4f;
        bool below = false, above = false;
        for (uint64_t key = 0; key < 50; key++) {
            kelp_augment_plan plan;
            TEST_OK(kelp_augment_plan_sample(&cfg, 1, key, 16, 16, &plan));
            float f = which ? plan.contrast : plan.brightness;
            assert_true(f >= 0.6f && f <= 1.4f);
            assert_true((which ? plan.brightness : plan.contrast) == 1.0f);
            below |= f < 0.9f, above |= f > 1.1f;
            result r;
            kelp_augment_output *out = output_of(&r);
            out->mask = NULL;
            TEST_OK(kelp_augment_apply(&cfg, &plan, &in, out));
            double mean, sd;
            stats(r.pixels, 16 * 16 * 3, &mean, &sd);
            double want_mean = which ? mean0 : f * mean0, want_sd = f * sd0;
            if (fabs(mean - want_mean) > 0.5 || fabs(sd - want_sd) > 0.5)
                fail_msg("%s %g: mean %g sd %g, want %g and %g", which ? "contrast" : "brightness", f, mean, sd,
                         want_mean, want_sd);
        }
        assert_true(below && above);
    }
}

/* -------------------------------------------------------------------------------------- determinism and modes */

static void full_train_config(kelp_augment_config *cfg)
{
    kelp_augment_config_init(cfg, 12, 12);
    cfg->random_resized_crop = cfg->hflip = cfg->vflip = cfg->rot90 = true;
    cfg->pad = 2;
    cfg->brightness = cfg->contrast = 0.3f;
}

static void test_same_key_same_output_other_key_differs(void **state)
{
    (void)state;
    image im;
    fill_random(&im, 20, 30, 3, 4);
    kelp_augment_input in = input_of(&im);
    kelp_augment_config cfg;
    full_train_config(&cfg);
    result a, b, c;
    TEST_OK(kelp_augment_sample(&cfg, 42, 7, &in, output_of(&a)));
    TEST_OK(kelp_augment_sample(&cfg, 42, 7, &in, output_of(&b)));
    assert_memory_equal(a.pixels, b.pixels, 12 * 12 * 3);
    assert_memory_equal(a.mask, b.mask, 12 * 12);
    TEST_OK(kelp_augment_sample(&cfg, 42, 8, &in, output_of(&c)));
    assert_memory_not_equal(a.pixels, c.pixels, 12 * 12 * 3);
    TEST_OK(kelp_augment_sample(&cfg, 43, 7, &in, output_of(&c)));
    assert_memory_not_equal(a.pixels, c.pixels, 12 * 12 * 3);
}

/* Each op draws from its own stream: switching others on or off leaves its draws alone. */
static void test_ops_draw_independently(void **state)
{
    (void)state;
    kelp_augment_config only_flip, all;
    kelp_augment_config_init(&only_flip, 12, 12);
    only_flip.hflip = true;
    full_train_config(&all);
    int flips = 0, same_as_vflip = 0;
    for (uint64_t key = 0; key < 64; key++) {
        kelp_augment_plan a, b;
        TEST_OK(kelp_augment_plan_sample(&only_flip, 5, key, 20, 30, &a));
        TEST_OK(kelp_augment_plan_sample(&all, 5, key, 20, 30, &b));
        assert_int_equal(a.hflip, b.hflip);
        flips += a.hflip;
        same_as_vflip += b.hflip == b.vflip;
    }
    assert_in_range(flips, 16, 48);
    assert_in_range(same_as_vflip, 16, 48); /* the two flips are not one coin */
}

static void assert_plan_equal(const kelp_augment_plan *a, const kelp_augment_plan *b)
{
    assert_int_equal(a->quarter_turns, b->quarter_turns);
    assert_int_equal(a->hflip, b->hflip);
    assert_int_equal(a->vflip, b->vflip);
    assert_int_equal(a->crop_x, b->crop_x);
    assert_int_equal(a->crop_y, b->crop_y);
    assert_int_equal(a->crop_w, b->crop_w);
    assert_int_equal(a->crop_h, b->crop_h);
    assert_int_equal(a->shift_x, b->shift_x);
    assert_int_equal(a->shift_y, b->shift_y);
    assert_true(a->brightness == b->brightness && a->contrast == b->contrast);
}

static void test_eval_mode_is_fit_only(void **state)
{
    (void)state;
    image im;
    fill_random(&im, 20, 30, 3, 5);
    kelp_augment_input in = input_of(&im);
    kelp_augment_config cfg;
    full_train_config(&cfg);
    cfg.fit = KELP_FIT_LETTERBOX;
    kelp_augment_config_eval(&cfg);
    assert_int_equal(cfg.fit, KELP_FIT_LETTERBOX);
    kelp_augment_plan identity;
    kelp_augment_plan_identity(20, 30, &identity);
    result fit, r;
    TEST_OK(kelp_augment_apply(&cfg, &identity, &in, output_of(&fit)));
    for (uint64_t key = 0; key < 20; key++) {
        kelp_augment_plan plan;
        TEST_OK(kelp_augment_plan_sample(&cfg, 9, key, 20, 30, &plan));
        assert_plan_equal(&plan, &identity);
        TEST_OK(kelp_augment_sample(&cfg, 9, key, &in, output_of(&r)));
        assert_memory_equal(r.pixels, fit.pixels, 12 * 12 * 3);
    }
    /* 20x30 letterboxed into 12x12: 8 rows of image, 2 bars of 2 rows */
    assert_int_equal(fit.mask[0], 255);
    assert_int_equal(fit.mask[12 * 11], 255);
    assert_in_range(fit.mask[12 * 2], 0, 4);
    assert_in_range(fit.mask[12 * 9 + 11], 0, 4);
}

/* ------------------------------------------------------------------------------------------------- channels */

static void test_channel_conversion(void **state)
{
    (void)state;
    const uint8_t gray[2] = {10, 200};
    const uint8_t rgba[8] = {255, 0, 0, 9, 0, 0, 255, 9};
    kelp_augment_config cfg;
    kelp_augment_config_init(&cfg, 1, 2);
    result r;
    kelp_augment_output *out = output_of(&r);
    out->mask = NULL;

    cfg.out_c = 3;
    kelp_augment_input in = {.pixels = gray, .h = 1, .w = 2, .c = 1};
    TEST_OK(kelp_augment_sample(&cfg, 0, 0, &in, out));
    const uint8_t replicated[6] = {10, 10, 10, 200, 200, 200};
    assert_bytes(r.pixels, replicated, 6, "gray to RGB");

    in = (kelp_augment_input){.pixels = rgba, .h = 1, .w = 2, .c = 4};
    TEST_OK(kelp_augment_sample(&cfg, 0, 0, &in, out));
    const uint8_t dropped_alpha[6] = {255, 0, 0, 0, 0, 255};
    assert_bytes(r.pixels, dropped_alpha, 6, "RGBA to RGB");

    cfg.out_c = 1;
    TEST_OK(kelp_augment_sample(&cfg, 0, 0, &in, out));
    const uint8_t luma[2] = {76, 29}; /* 0.299 * 255, 0.114 * 255 */
    assert_bytes(r.pixels, luma, 2, "RGBA to luma");

    cfg.out_c = 4;
    in = (kelp_augment_input){.pixels = gray, .h = 1, .w = 2, .c = 1};
    TEST_FAILS_WITH(kelp_augment_sample(&cfg, 0, 0, &in, out), KELP_ERR_UNSUPPORTED, "1 channels into 4");
}

static void test_normalize_values(void **state)
{
    (void)state;
    uint8_t pixels[2 * 3];
    for (int i = 0; i < 6; i++)
        pixels[i] = (uint8_t)(i * 51);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    float got[6];
    TEST_OK(kelp_augment_normalize(pixels, 2, 3, mean, sd, got));
    double want[6];
    for (int i = 0; i < 6; i++)
        want[i] = (pixels[i] / 255.0 - mean[i % 3]) / sd[i % 3];
    test_assert_close(got, want, 6, 1e-6, 1e-6, "normalized");
    const float zero_sd[3] = {0.2f, 0.0f, 0.2f};
    TEST_FAILS_WITH(kelp_augment_normalize(pixels, 2, 3, mean, zero_sd, got), KELP_ERR_INVALID_ARG, "channel 1");
    TEST_FAILS_WITH(kelp_augment_normalize(pixels, 2, 5, mean, sd, got), KELP_ERR_INVALID_ARG, "5 channels");
}

/* ------------------------------------------------------------------------------------------------ bad input */

static void test_rejects_bad_config_plan_and_input(void **state)
{
    (void)state;
    image im;
    fill_coded(&im, 4, 4, 1);
    kelp_augment_input in = input_of(&im);
    kelp_augment_config cfg;
    kelp_augment_plan plan;
    result r;

    kelp_augment_config_init(&cfg, 0, 4);
    TEST_FAILS_WITH(kelp_augment_config_check(&cfg), KELP_ERR_INVALID_ARG, "output size 0x4");
    kelp_augment_config_init(&cfg, 4, 4);
    cfg.random_resized_crop = true, cfg.scale_min = 0;
    TEST_FAILS_WITH(kelp_augment_config_check(&cfg), KELP_ERR_INVALID_ARG, "scale");
    kelp_augment_config_init(&cfg, 4, 4);
    cfg.brightness = NAN;
    TEST_FAILS_WITH(kelp_augment_config_check(&cfg), KELP_ERR_INVALID_ARG, "brightness");
    kelp_augment_config_init(&cfg, 4, 4);
    cfg.pad = -1;
    TEST_FAILS_WITH(kelp_augment_config_check(&cfg), KELP_ERR_INVALID_ARG, "pad -1");

    kelp_augment_config_init(&cfg, 4, 4);
    kelp_augment_plan_identity(4, 4, &plan);
    plan.crop_x = 1;
    TEST_FAILS_WITH(kelp_augment_apply(&cfg, &plan, &in, output_of(&r)), KELP_ERR_INVALID_ARG, "leaves");
    kelp_augment_plan_identity(4, 4, &plan);
    plan.quarter_turns = 4;
    TEST_FAILS_WITH(kelp_augment_apply(&cfg, &plan, &in, output_of(&r)), KELP_ERR_INVALID_ARG, "quarter turns");

    in.h = 0;
    TEST_FAILS_WITH(kelp_augment_sample(&cfg, 0, 0, &in, output_of(&r)), KELP_ERR_INVALID_ARG, "0x4");
    in = input_of(&im);
    in.mask = NULL;
    TEST_FAILS_WITH(kelp_augment_sample(&cfg, 0, 0, &in, output_of(&r)), KELP_ERR_INVALID_ARG, "mask");
    in = input_of(&im);
    in.n_boxes = 2;
    TEST_FAILS_WITH(kelp_augment_sample(&cfg, 0, 0, &in, output_of(&r)), KELP_ERR_INVALID_ARG, "2 input boxes");
}

static void test_rng_below_is_uniform_and_in_range(void **state)
{
    (void)state;
    kelp_aug_rng rng = kelp_aug_rng_make(1, 2);
    int counts[6] = {0};
    for (int i = 0; i < 6000; i++) {
        uint64_t v = kelp_aug_rng_below(&rng, 6);
        assert_true(v < 6);
        counts[v]++;
    }
    for (int i = 0; i < 6; i++)
        assert_in_range(counts[i], 850, 1150);
    kelp_aug_rng a = kelp_aug_rng_make(1, 2), b = kelp_aug_rng_make(1, 3);
    assert_true(kelp_aug_rng_next(&a) != kelp_aug_rng_next(&b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_plan_copies_exactly),
        cmocka_unit_test(test_rot90_by_hand),
        cmocka_unit_test(test_hflip_and_vflip_by_hand),
        cmocka_unit_test(test_all_turns_and_flips_move_pixels_masks_and_boxes_together),
        cmocka_unit_test(test_letterbox_pads_centers_and_scales_boxes),
        cmocka_unit_test(test_resize_downscale_averages_blocks),
        cmocka_unit_test(test_pad_and_crop_shifts_within_bounds),
        cmocka_unit_test(test_random_resized_crop_stays_inside),
        cmocka_unit_test(test_crop_copies_the_region),
        cmocka_unit_test(test_crop_upscale_clamps_to_region),
        cmocka_unit_test(test_boxes_clipped_and_dropped),
        cmocka_unit_test(test_brightness_and_contrast_by_hand),
        cmocka_unit_test(test_sampled_jitter_moves_mean_and_spread),
        cmocka_unit_test(test_same_key_same_output_other_key_differs),
        cmocka_unit_test(test_ops_draw_independently),
        cmocka_unit_test(test_eval_mode_is_fit_only),
        cmocka_unit_test(test_channel_conversion),
        cmocka_unit_test(test_normalize_values),
        cmocka_unit_test(test_rejects_bad_config_plan_and_input),
        cmocka_unit_test(test_rng_below_is_uniform_and_in_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
