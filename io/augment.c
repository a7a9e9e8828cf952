/* Augmentation: plans drawn from a counter-based generator, then one resampling pass per sample.
 *
 * Geometry. Coordinates are continuous, pixel i covering [i, i + 1), so turns and flips map pixel centers onto
 * pixel centers exactly. Each output axis maps to one source axis by an affine function, built by chaining
 * (output u) -> (fitted region u + shift) -> (turned, flipped image) -> (turned image, flips undone) -> (source,
 * turns undone). Sampling tables per output column and per output row hold the source offsets and weights, so the
 * pixel loop does no coordinate math; the same maps, inverted, move the boxes. */
#include "io/augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops/prep.h"

#define GOLDEN_GAMMA 0x9E3779B97F4A7C15ull

/* Each op draws from its own counter range of the sample's stream. */
enum { OP_ROT90 = 1, OP_HFLIP, OP_VFLIP, OP_CROP, OP_PAD, OP_BRIGHTNESS, OP_CONTRAST };

#define RESIZED_CROP_TRIES 10

/* ------------------------------------------------------------------------------------------------- generator */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

kelp_aug_rng kelp_aug_rng_make(uint64_t seed, uint64_t stream)
{
    kelp_aug_rng rng = {mix64(mix64(seed + GOLDEN_GAMMA) ^ stream), 0};
    return rng;
}

uint64_t kelp_aug_rng_next(kelp_aug_rng *rng)
{
    return mix64(rng->key + GOLDEN_GAMMA * ++rng->counter);
}

uint64_t kelp_aug_rng_below(kelp_aug_rng *rng, uint64_t n)
{
    if (n == 0)
        return 0;
    uint64_t threshold = (0 - n) % n; /* 2^64 mod n: draws below it would favour small results */
    uint64_t r;
    do {
        r = kelp_aug_rng_next(rng);
    } while (r < threshold);
    return r % n;
}

static double rng_uniform(kelp_aug_rng *rng, double lo, double hi)
{
    double u = (double)(kelp_aug_rng_next(rng) >> 11) * 0x1.0p-53;
    return lo + (hi - lo) * u;
}

static kelp_aug_rng op_rng(uint64_t seed, uint64_t key, int op)
{
    kelp_aug_rng rng = kelp_aug_rng_make(seed, key);
    rng.counter = (uint64_t)op << 32;
    return rng;
}

/* ---------------------------------------------------------------------------------------------------- config */

void kelp_augment_config_init(kelp_augment_config *cfg, int out_h, int out_w)
{
    *cfg = (kelp_augment_config){
        .out_h = out_h,
        .out_w = out_w,
        .fit = KELP_FIT_RESIZE,
        .scale_min = 0.08f,
        .scale_max = 1.0f,
        .ratio_min = 3.0f / 4.0f,
        .ratio_max = 4.0f / 3.0f,
        .min_box_visible = 0.25f,
        .min_box_side = 2.0f,
    };
}

void kelp_augment_config_eval(kelp_augment_config *cfg)
{
    cfg->random_resized_crop = false;
    cfg->pad = 0;
    cfg->hflip = cfg->vflip = cfg->rot90 = false;
    cfg->brightness = cfg->contrast = 0.0f;
}

/* False for NaN too. */
static bool within(float v, float lo, float hi)
{
    return v >= lo && v <= hi;
}

static kelp_status check_resized_crop(const kelp_augment_config *cfg)
{
    if (!(cfg->scale_min > 0.0f && cfg->scale_min <= cfg->scale_max && cfg->scale_max <= 1.0f))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: random resized crop scale [%g, %g] must satisfy "
                              "0 < min <= max <= 1", cfg->scale_min, cfg->scale_max);
    if (!(cfg->ratio_min > 0.0f && cfg->ratio_min <= cfg->ratio_max && isfinite(cfg->ratio_max)))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: random resized crop ratio [%g, %g] must satisfy "
                              "0 < min <= max", cfg->ratio_min, cfg->ratio_max);
    return KELP_OK;
}

kelp_status kelp_augment_config_check(const kelp_augment_config *cfg)
{
    if (!cfg)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: no config");
    if (cfg->out_h < 1 || cfg->out_h > KELP_AUGMENT_MAX_SIDE || cfg->out_w < 1 || cfg->out_w > KELP_AUGMENT_MAX_SIDE)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: output size %dx%d is outside 1..%d", cfg->out_h,
                              cfg->out_w, KELP_AUGMENT_MAX_SIDE);
    if (cfg->out_c < 0 || cfg->out_c > KELP_AUGMENT_MAX_CHANNELS)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: out_c %d is outside 0..%d", cfg->out_c,
                              KELP_AUGMENT_MAX_CHANNELS);
    if (cfg->fit != KELP_FIT_RESIZE && cfg->fit != KELP_FIT_LETTERBOX)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: unknown fit mode %d", (int)cfg->fit);
    if (cfg->pad < 0 || cfg->pad > KELP_AUGMENT_MAX_SIDE)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: pad %d is outside 0..%d", cfg->pad,
                              KELP_AUGMENT_MAX_SIDE);
    if (cfg->random_resized_crop)
        KELP_TRY(check_resized_crop(cfg));
    if (!within(cfg->brightness, 0.0f, 1.0f) || !within(cfg->contrast, 0.0f, 1.0f))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: brightness %g and contrast %g must lie in [0, 1]",
                              cfg->brightness, cfg->contrast);
    if (!within(cfg->min_box_visible, 0.0f, 1.0f) || !within(cfg->min_box_side, 0.0f, KELP_AUGMENT_MAX_SIDE))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: min_box_visible %g must lie in [0, 1] and "
                              "min_box_side %g in [0, %d]", cfg->min_box_visible, cfg->min_box_side,
                              KELP_AUGMENT_MAX_SIDE);
    return KELP_OK;
}

int kelp_augment_out_channels(const kelp_augment_config *cfg, int in_c)
{
    return cfg->out_c ? cfg->out_c : in_c;
}

/* Same count; gray (+alpha) or RGB(A) to gray; gray (+alpha) or RGBA to RGB. */
static bool channels_convertible(int in_c, int out_c)
{
    return in_c == out_c || out_c == 1 || (out_c == 3 && in_c != 3);
}

/* ------------------------------------------------------------------------------------------------------ plans */

void kelp_augment_plan_identity(int h, int w, kelp_augment_plan *plan)
{
    *plan = (kelp_augment_plan){.crop_w = w, .crop_h = h, .brightness = 1.0f, .contrast = 1.0f};
}

static kelp_status check_image_size(int h, int w)
{
    if (h < 1 || h > KELP_AUGMENT_MAX_SIDE || w < 1 || w > KELP_AUGMENT_MAX_SIDE)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: image size %dx%d is outside 1..%d", h, w,
                              KELP_AUGMENT_MAX_SIDE);
    return KELP_OK;
}

/* torchvision.transforms.RandomResizedCrop.get_params, rounding half to even like Python's round(). */
static void sample_resized_crop(const kelp_augment_config *cfg, kelp_aug_rng *rng, int h, int w,
                                kelp_augment_plan *plan)
{
    double area = (double)h * w, log_lo = log(cfg->ratio_min), log_hi = log(cfg->ratio_max);
    for (int t = 0; t < RESIZED_CROP_TRIES; t++) {
        double target = area * rng_uniform(rng, cfg->scale_min, cfg->scale_max);
        double aspect = exp(rng_uniform(rng, log_lo, log_hi));
        double cw = nearbyint(sqrt(target * aspect)), ch = nearbyint(sqrt(target / aspect));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            plan->crop_w = (int)cw;
            plan->crop_h = (int)ch;
            plan->crop_y = (int)kelp_aug_rng_below(rng, (uint64_t)(h - plan->crop_h + 1));
            plan->crop_x = (int)kelp_aug_rng_below(rng, (uint64_t)(w - plan->crop_w + 1));
            return;
        }
    }
    double in_ratio = (double)w / h;
    plan->crop_w = w;
    plan->crop_h = h;
    if (in_ratio < cfg->ratio_min)
        plan->crop_h = (int)nearbyint(w / (double)cfg->ratio_min);
    else if (in_ratio > cfg->ratio_max)
        plan->crop_w = (int)nearbyint(h * (double)cfg->ratio_max);
    plan->crop_y = (h - plan->crop_h) / 2;
    plan->crop_x = (w - plan->crop_w) / 2;
}

static float jitter_factor(uint64_t seed, uint64_t key, int op, float amount)
{
    kelp_aug_rng rng = op_rng(seed, key, op);
    return (float)rng_uniform(&rng, 1.0 - amount, 1.0 + amount);
}

static bool coin(uint64_t seed, uint64_t key, int op)
{
    kelp_aug_rng rng = op_rng(seed, key, op);
    return kelp_aug_rng_next(&rng) >> 63;
}

kelp_status kelp_augment_plan_sample(const kelp_augment_config *cfg, uint64_t seed, uint64_t key, int h, int w,
                                     kelp_augment_plan *plan)
{
    KELP_TRY(kelp_augment_config_check(cfg));
    KELP_TRY(check_image_size(h, w));
    kelp_augment_plan_identity(h, w, plan);
    if (cfg->rot90) {
        kelp_aug_rng rng = op_rng(seed, key, OP_ROT90);
        plan->quarter_turns = (int)kelp_aug_rng_below(&rng, 4);
    }
    int turned_h = plan->quarter_turns % 2 ? w : h, turned_w = plan->quarter_turns % 2 ? h : w;
    plan->crop_w = turned_w;
    plan->crop_h = turned_h;
    plan->hflip = cfg->hflip && coin(seed, key, OP_HFLIP);
    plan->vflip = cfg->vflip && coin(seed, key, OP_VFLIP);
    if (cfg->random_resized_crop) {
        kelp_aug_rng rng = op_rng(seed, key, OP_CROP);
        sample_resized_crop(cfg, &rng, turned_h, turned_w, plan);
    }
    if (cfg->pad > 0) {
        kelp_aug_rng rng = op_rng(seed, key, OP_PAD);
        uint64_t span = 2 * (uint64_t)cfg->pad + 1;
        plan->shift_x = (int)kelp_aug_rng_below(&rng, span) - cfg->pad;
        plan->shift_y = (int)kelp_aug_rng_below(&rng, span) - cfg->pad;
    }
    if (cfg->brightness > 0.0f)
        plan->brightness = jitter_factor(seed, key, OP_BRIGHTNESS, cfg->brightness);
    if (cfg->contrast > 0.0f)
        plan->contrast = jitter_factor(seed, key, OP_CONTRAST, cfg->contrast);
    return KELP_OK;
}

static kelp_status check_plan(const kelp_augment_plan *plan, int h, int w)
{
    if (!plan || plan->quarter_turns < 0 || plan->quarter_turns > 3)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: plan quarter turns must be 0..3");
    int turned_h = plan->quarter_turns % 2 ? w : h, turned_w = plan->quarter_turns % 2 ? h : w;
    if (plan->crop_w < 1 || plan->crop_h < 1 || plan->crop_x < 0 || plan->crop_y < 0 ||
        plan->crop_x > turned_w - plan->crop_w || plan->crop_y > turned_h - plan->crop_h)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: plan crop %dx%d at (%d, %d) leaves the %dx%d image",
                              plan->crop_w, plan->crop_h, plan->crop_x, plan->crop_y, turned_w, turned_h);
    if (plan->shift_x < -KELP_AUGMENT_MAX_SIDE || plan->shift_x > KELP_AUGMENT_MAX_SIDE ||
        plan->shift_y < -KELP_AUGMENT_MAX_SIDE || plan->shift_y > KELP_AUGMENT_MAX_SIDE)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: plan shift (%d, %d) exceeds %d", plan->shift_x,
                              plan->shift_y, KELP_AUGMENT_MAX_SIDE);
    if (!within(plan->brightness, 0.0f, 2.0f) || !within(plan->contrast, 0.0f, 2.0f))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: plan factors brightness %g, contrast %g must lie "
                              "in [0, 2]", plan->brightness, plan->contrast);
    return KELP_OK;
}

/* -------------------------------------------------------------------------------------------------- geometry */

/* One output axis: source coordinate = offset + scale * u for the continuous output coordinate u. */
typedef struct axis_map {
    double offset, scale;
    int src_axis;           /* 0: the source's x (columns), 1: its y (rows) */
    int lo, hi;             /* the cropped region along that source axis, [lo, hi) */
    int valid_lo, valid_hi; /* output pixels that the region covers, [valid_lo, valid_hi) */
} axis_map;

/* One output axis as the plan and the fit describe it, before turns and flips are undone. */
typedef struct axis_spec {
    int out_len, target0, target_len; /* the fitted region occupies [target0, target0 + target_len) */
    int shift, crop0, crop_len, turned_len;
    bool flipped;
} axis_spec;

/* How a coordinate t of the turned image maps to the source: source[src_axis] = base + sign * t. */
typedef struct turn_map {
    int src_axis, sign, base;
} turn_map;

/* numpy.rot90(src, k)[i][j] = src[j][W-1-i] for k = 1; the other turns follow from composing it. */
static void turn_maps(int quarter_turns, int h, int w, turn_map *x, turn_map *y)
{
    switch (quarter_turns) {
    case 1:
        *x = (turn_map){1, 1, 0}, *y = (turn_map){0, -1, w};
        break;
    case 2:
        *x = (turn_map){0, -1, w}, *y = (turn_map){1, -1, h};
        break;
    case 3:
        *x = (turn_map){1, -1, h}, *y = (turn_map){0, 1, 0};
        break;
    default:
        *x = (turn_map){0, 1, 0}, *y = (turn_map){1, 1, 0};
        break;
    }
}

static int clamp_int(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static axis_map build_axis(const axis_spec *s, turn_map turn)
{
    double k = (double)s->crop_len / s->target_len;
    double a = s->crop0 + (s->shift - s->target0) * k;
    int r0 = s->crop0, r1 = s->crop0 + s->crop_len;
    if (s->flipped) {
        a = s->turned_len - a, k = -k;
        r0 = s->turned_len - (s->crop0 + s->crop_len), r1 = s->turned_len - s->crop0;
    }
    axis_map m = {.offset = turn.base + turn.sign * a, .scale = turn.sign * k, .src_axis = turn.src_axis};
    int e0 = turn.base + turn.sign * r0, e1 = turn.base + turn.sign * r1;
    m.lo = e0 < e1 ? e0 : e1;
    m.hi = e0 < e1 ? e1 : e0;
    m.valid_lo = clamp_int(s->target0 - s->shift, 0, s->out_len);
    m.valid_hi = clamp_int(s->target0 + s->target_len - s->shift, m.valid_lo, s->out_len);
    return m;
}

/* Where the fit puts the crop in the output: stretched over all of it, or scaled to fit and centered. */
static void fit_target(const kelp_augment_config *cfg, const kelp_augment_plan *plan, axis_spec *x, axis_spec *y)
{
    x->target0 = y->target0 = 0;
    x->target_len = cfg->out_w;
    y->target_len = cfg->out_h;
    if (cfg->fit != KELP_FIT_LETTERBOX)
        return;
    double s = fmin((double)cfg->out_w / plan->crop_w, (double)cfg->out_h / plan->crop_h);
    x->target_len = clamp_int((int)lround(plan->crop_w * s), 1, cfg->out_w);
    y->target_len = clamp_int((int)lround(plan->crop_h * s), 1, cfg->out_h);
    x->target0 = (cfg->out_w - x->target_len) / 2;
    y->target0 = (cfg->out_h - y->target_len) / 2;
}

static void build_geometry(const kelp_augment_config *cfg, const kelp_augment_plan *plan, int h, int w,
                           axis_map *mx, axis_map *my)
{
    bool odd = plan->quarter_turns % 2;
    axis_spec x = {.out_len = cfg->out_w, .shift = plan->shift_x, .crop0 = plan->crop_x, .crop_len = plan->crop_w,
                   .turned_len = odd ? h : w, .flipped = plan->hflip};
    axis_spec y = {.out_len = cfg->out_h, .shift = plan->shift_y, .crop0 = plan->crop_y, .crop_len = plan->crop_h,
                   .turned_len = odd ? w : h, .flipped = plan->vflip};
    fit_target(cfg, plan, &x, &y);
    turn_map tx, ty;
    turn_maps(plan->quarter_turns, h, w, &tx, &ty);
    *mx = build_axis(&x, tx);
    *my = build_axis(&y, ty);
}

/* ------------------------------------------------------------------------------------------------ resampling */

/* Bilinear weights in fixed point: a pixel value times a weight product stays below 2^30. */
#define WEIGHT_BITS 11
#define WEIGHT_ONE (1 << WEIGHT_BITS)
#define WEIGHT_ROUND (1 << (2 * WEIGHT_BITS - 1))

/* One output column or row: byte offsets of its two bilinear neighbours (index * axis stride * channels), the
 * weight of the second, and the pixel offset of the nearest neighbour (index * axis stride) for masks. */
typedef struct tap {
    size_t o0, o1, nearest;
    int f;
} tap;

static void build_taps(const axis_map *m, size_t stride, int c, tap *taps)
{
    for (int o = m->valid_lo; o < m->valid_hi; o++) {
        double pos = m->offset + m->scale * (o + 0.5), p = floor(pos - 0.5);
        int i0 = clamp_int((int)p, m->lo, m->hi - 1), i1 = clamp_int((int)p + 1, m->lo, m->hi - 1);
        tap *t = &taps[o - m->valid_lo];
        t->o0 = (size_t)i0 * stride * c;
        t->o1 = (size_t)i1 * stride * c;
        t->nearest = (size_t)clamp_int((int)floor(pos), m->lo, m->hi - 1) * stride;
        t->f = (int)lround((pos - 0.5 - p) * WEIGHT_ONE);
    }
}

/* One output row from the source rows (or columns, when turned) r0 and r1; c is a constant where inlined. */
static inline void lerp_row(const uint8_t *r0, const uint8_t *r1, int fy, const tap *tx, int n, int c, uint8_t *dst)
{
    const int gy = WEIGHT_ONE - fy;
    for (int x = 0; x < n; x++, dst += c) {
        const size_t a = tx[x].o0, b = tx[x].o1;
        const int f = tx[x].f, g = WEIGHT_ONE - f;
        for (int ch = 0; ch < c; ch++) {
            int top = r0[a + ch] * g + r0[b + ch] * f, bottom = r1[a + ch] * g + r1[b + ch] * f;
            dst[ch] = (uint8_t)((top * gy + bottom * fy + WEIGHT_ROUND) >> (2 * WEIGHT_BITS));
        }
    }
}

static void lerp_row_channels(const uint8_t *r0, const uint8_t *r1, int fy, const tap *tx, int n, int c,
                              uint8_t *dst)
{
    if (c == 3)
        lerp_row(r0, r1, fy, tx, n, 3, dst);
    else if (c == 1)
        lerp_row(r0, r1, fy, tx, n, 1, dst);
    else
        lerp_row(r0, r1, fy, tx, n, c, dst);
}

/* Gray (+alpha) or RGB(A) to gray with PIL's integer luma; gray (+alpha) or RGBA to RGB. */
static void convert_row(const uint8_t *src, int n, int in_c, int out_c, uint8_t *dst)
{
    for (int x = 0; x < n; x++, src += in_c, dst += out_c) {
        if (out_c == 1)
            dst[0] = in_c >= 3 ? (uint8_t)((19595 * src[0] + 38470 * src[1] + 7471 * src[2] + 0x8000) >> 16)
                               : src[0];
        else
            for (int ch = 0; ch < 3; ch++)
                dst[ch] = src[in_c >= 3 ? ch : 0];
    }
}

typedef struct sampler {
    const axis_map *mx, *my;
    const tap *tx, *ty; /* per valid output column, per valid output row */
    int out_w;
    uint8_t *row;       /* one output row at the input's channels, when they differ from the output's */
} sampler;

static void resample_pixels(const sampler *s, const kelp_augment_input *in, int out_c, uint8_t *dst)
{
    int n = s->mx->valid_hi - s->mx->valid_lo;
    for (int oy = s->my->valid_lo; oy < s->my->valid_hi; oy++) {
        const tap *r = &s->ty[oy - s->my->valid_lo];
        uint8_t *out = dst + ((size_t)oy * s->out_w + s->mx->valid_lo) * out_c;
        uint8_t *lerped = in->c == out_c ? out : s->row;
        lerp_row_channels(in->pixels + r->o0, in->pixels + r->o1, r->f, s->tx, n, in->c, lerped);
        if (in->c != out_c)
            convert_row(lerped, n, in->c, out_c, out);
    }
}

static void resample_mask(const sampler *s, const uint8_t *mask, uint8_t *dst)
{
    for (int oy = s->my->valid_lo; oy < s->my->valid_hi; oy++) {
        size_t r = s->ty[oy - s->my->valid_lo].nearest;
        uint8_t *row = dst + (size_t)oy * s->out_w;
        for (int ox = s->mx->valid_lo; ox < s->mx->valid_hi; ox++)
            row[ox] = mask[r + s->tx[ox - s->mx->valid_lo].nearest];
    }
}

static bool covers_output(const axis_map *mx, const axis_map *my, const kelp_augment_config *cfg)
{
    return mx->valid_lo == 0 && mx->valid_hi == cfg->out_w && my->valid_lo == 0 && my->valid_hi == cfg->out_h;
}

/* Brightness then contrast as one lookup table: (b*v - b*mean) * c + b*mean, mean over the covered pixels. */
static void jitter(const kelp_augment_plan *plan, const axis_map *mx, const axis_map *my, int out_w, int c,
                   uint8_t *pixels)
{
    size_t row_len = (size_t)(mx->valid_hi - mx->valid_lo) * c;
    size_t count = row_len * (size_t)(my->valid_hi - my->valid_lo);
    if ((plan->brightness == 1.0f && plan->contrast == 1.0f) || count == 0)
        return;
    uint64_t sum = 0;
    for (int oy = my->valid_lo; oy < my->valid_hi; oy++) {
        const uint8_t *row = pixels + ((size_t)oy * out_w + mx->valid_lo) * c;
        for (size_t i = 0; i < row_len; i++)
            sum += row[i];
    }
    double b = plan->brightness, mean = b * (double)sum / (double)count;
    uint8_t lut[256];
    for (int v = 0; v < 256; v++)
        lut[v] = (uint8_t)fmin(255.0, fmax(0.0, floor((b * v - mean) * plan->contrast + mean + 0.5)));
    for (int oy = my->valid_lo; oy < my->valid_hi; oy++) {
        uint8_t *row = pixels + ((size_t)oy * out_w + mx->valid_lo) * c;
        for (size_t i = 0; i < row_len; i++)
            row[i] = lut[row[i]];
    }
}

/* ----------------------------------------------------------------------------------------------------- boxes */

/* The output interval [lo, hi] that the source interval of a box along m's source axis maps to. */
static void map_interval(const axis_map *m, const float *box, double *lo, double *hi)
{
    double a = (box[m->src_axis] - m->offset) / m->scale, b = (box[m->src_axis + 2] - m->offset) / m->scale;
    *lo = fmin(a, b);
    *hi = fmax(a, b);
}

/* Maps one box; false when the rules drop it. */
static bool map_box(const kelp_augment_config *cfg, const axis_map *mx, const axis_map *my, const float *box,
                    float *dst)
{
    double x0, x1, y0, y1;
    map_interval(mx, box, &x0, &x1);
    map_interval(my, box, &y0, &y1);
    double cx0 = fmax(x0, mx->valid_lo), cx1 = fmin(x1, mx->valid_hi);
    double cy0 = fmax(y0, my->valid_lo), cy1 = fmin(y1, my->valid_hi);
    double area = (x1 - x0) * (y1 - y0), visible = (cx1 - cx0) * (cy1 - cy0);
    if (!(area > 0) || !(cx1 > cx0 && cy1 > cy0) || visible < cfg->min_box_visible * area)
        return false;
    bool clipped = cx0 != x0 || cx1 != x1 || cy0 != y0 || cy1 != y1;
    if (clipped && (cx1 - cx0 < cfg->min_box_side || cy1 - cy0 < cfg->min_box_side))
        return false;
    dst[0] = (float)cx0, dst[1] = (float)cy0, dst[2] = (float)cx1, dst[3] = (float)cy1;
    return true;
}

static kelp_status map_boxes(const kelp_augment_config *cfg, const axis_map *mx, const axis_map *my,
                             const kelp_augment_input *in, kelp_augment_output *out)
{
    for (int b = 0; b < in->n_boxes; b++) {
        float mapped[4];
        if (!map_box(cfg, mx, my, &in->boxes[4 * (size_t)b], mapped))
            continue;
        if (out->n_boxes == out->max_boxes)
            return kelp_set_error(KELP_ERR_SHAPE, "augment: more than %d boxes survive (the image has %d)",
                                  out->max_boxes, in->n_boxes);
        memcpy(&out->boxes[4 * (size_t)out->n_boxes], mapped, sizeof mapped);
        out->box_labels[out->n_boxes++] = in->box_labels[b];
    }
    return KELP_OK;
}

/* ----------------------------------------------------------------------------------------------------- apply */

static kelp_status check_io(const kelp_augment_config *cfg, const kelp_augment_input *in,
                            const kelp_augment_output *out)
{
    if (!in || !out || !in->pixels || !out->pixels)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: missing input or output pixels");
    KELP_TRY(check_image_size(in->h, in->w));
    if (in->c < 1 || in->c > KELP_AUGMENT_MAX_CHANNELS)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: %d channels is outside 1..%d", in->c,
                              KELP_AUGMENT_MAX_CHANNELS);
    int out_c = kelp_augment_out_channels(cfg, in->c);
    if (!channels_convertible(in->c, out_c))
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "augment: cannot turn %d channels into %d", in->c, out_c);
    if (out->mask && !in->mask)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: a mask is wanted but the input has none");
    if (out->boxes && (!out->box_labels || out->max_boxes < 0))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: boxes wanted without labels or room");
    if (out->boxes && (in->n_boxes < 0 || (in->n_boxes > 0 && (!in->boxes || !in->box_labels))))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: %d input boxes without coordinates or labels",
                              in->n_boxes);
    return KELP_OK;
}

static kelp_status resample(const kelp_augment_config *cfg, const kelp_augment_plan *plan,
                            const kelp_augment_input *in, kelp_augment_output *out, const axis_map *mx,
                            const axis_map *my)
{
    int out_c = kelp_augment_out_channels(cfg, in->c);
    bool full = covers_output(mx, my, cfg);
    if (!full)
        memset(out->pixels, cfg->fill, (size_t)cfg->out_h * cfg->out_w * out_c);
    if (out->mask && !full)
        memset(out->mask, KELP_AUGMENT_MASK_IGNORE, (size_t)cfg->out_h * cfg->out_w);
    size_t taps_bytes = ((size_t)cfg->out_w + cfg->out_h) * sizeof(tap);
    tap *taps = malloc(taps_bytes + (size_t)cfg->out_w * in->c);
    if (!taps)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "augment: out of memory for %dx%d sampling tables", cfg->out_h,
                              cfg->out_w);
    size_t stride_x = mx->src_axis ? (size_t)in->w : 1, stride_y = my->src_axis ? (size_t)in->w : 1;
    sampler s = {mx, my, taps, taps + cfg->out_w, cfg->out_w, (uint8_t *)taps + taps_bytes};
    build_taps(mx, stride_x, in->c, taps);
    build_taps(my, stride_y, in->c, taps + cfg->out_w);
    resample_pixels(&s, in, out_c, out->pixels);
    if (out->mask)
        resample_mask(&s, in->mask, out->mask);
    free(taps);
    jitter(plan, mx, my, cfg->out_w, out_c, out->pixels);
    return KELP_OK;
}

kelp_status kelp_augment_apply(const kelp_augment_config *cfg, const kelp_augment_plan *plan,
                               const kelp_augment_input *in, kelp_augment_output *out)
{
    KELP_TRY(kelp_augment_config_check(cfg));
    KELP_TRY(check_io(cfg, in, out));
    KELP_TRY(check_plan(plan, in->h, in->w));
    axis_map mx, my;
    build_geometry(cfg, plan, in->h, in->w, &mx, &my);
    KELP_TRY(resample(cfg, plan, in, out, &mx, &my));
    out->n_boxes = 0;
    if (out->boxes)
        KELP_TRY(map_boxes(cfg, &mx, &my, in, out));
    return KELP_OK;
}

kelp_status kelp_augment_sample(const kelp_augment_config *cfg, uint64_t seed, uint64_t key,
                                const kelp_augment_input *in, kelp_augment_output *out)
{
    if (!in)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "augment: no input");
    kelp_augment_plan plan;
    KELP_TRY(kelp_augment_plan_sample(cfg, seed, key, in->h, in->w, &plan));
    return kelp_augment_apply(cfg, &plan, in, out);
}

/* ------------------------------------------------------------------------------------------------- normalize */

kelp_status kelp_augment_normalize(const uint8_t *pixels, size_t n_pixels, int c, const float *mean,
                                   const float *std, float *out)
{
    if (!pixels || !mean || !std || !out || c < 1 || c > KELP_AUGMENT_MAX_CHANNELS)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "normalize: missing buffers or %d channels outside 1..%d", c,
                              KELP_AUGMENT_MAX_CHANNELS);
    float lut[KELP_AUGMENT_MAX_CHANNELS][256];
    for (int ch = 0; ch < c; ch++) {
        if (!isfinite(mean[ch]) || !(std[ch] > 0.0f) || !isfinite(std[ch]))
            return kelp_set_error(KELP_ERR_INVALID_ARG, "normalize: channel %d has mean %g and std %g; the mean "
                                  "must be finite and the std finite and positive", ch, mean[ch], std[ch]);
        for (int v = 0; v < 256; v++)
            lut[ch][v] = kelp_normalize_pixel((uint8_t)v, mean[ch], std[ch]);
    }
    for (size_t i = 0; i < n_pixels; i++)
        for (int ch = 0; ch < c; ch++)
            out[i * c + ch] = lut[ch][pixels[i * c + ch]];
    return KELP_OK;
}
