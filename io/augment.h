/* kelp io: data augmentation on uint8 HWC images, with their segmentation masks and detection boxes.
 *
 * Every geometric op is folded into ONE axis-aligned map from output pixels to source pixels, so an image is
 * resampled once whatever the ops: conceptually the source is first turned by quarter turns and flipped, then a
 * region of it is cropped, then the region is fitted to the model input (out_h, out_w) by stretching or by
 * letterboxing, then the result is shifted (pad-and-crop). Pixels are sampled bilinearly (half-pixel centers,
 * clamped to the cropped region, like a crop followed by a resize), masks by nearest neighbour, and boxes go
 * through the same map exactly. Output pixels that no source pixel covers (letterbox bars, pad-and-crop borders)
 * get `fill`; masks get 255 ("ignore") there. Brightness and contrast jitter act on the covered pixels only.
 *
 * Randomness is counter-based: the plan of a sample is a pure function of (seed, key), so the loader gets the same
 * sample for the same (seed, epoch, index) on every run, whatever its thread count. Each op draws from its own
 * counter range, so enabling one op does not change what another draws.
 *
 *   kelp_augment_config cfg;
 *   kelp_augment_config_init(&cfg, 224, 224);      // fit only (eval mode)
 *   cfg.random_resized_crop = cfg.hflip = true;     // train mode
 *   kelp_augment_input in = {.pixels = img, .h = h, .w = w, .c = 3};
 *   kelp_augment_output out = {.pixels = buf};      // buf holds 224*224*3 bytes
 *   KELP_TRY(kelp_augment_sample(&cfg, seed, key, &in, &out));
 *   KELP_TRY(kelp_augment_normalize(buf, 224 * 224, 3, mean, std, floats));
 *
 * Channels: the output has cfg.out_c channels (0 = as many as the input). Gray feeding an RGB model is
 * replicated; RGB (or RGBA) feeding a gray model becomes luma (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B, as PIL's
 * convert("L")); an alpha channel is dropped for a 3-channel model; gray+alpha keeps its gray. */
#ifndef KELP_IO_AUGMENT_H
#define KELP_IO_AUGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kelp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KELP_AUGMENT_MAX_SIDE 16384 /* output pixels per side, and pad-and-crop padding */
#define KELP_AUGMENT_MAX_CHANNELS 4
#define KELP_AUGMENT_MASK_IGNORE 255

typedef enum kelp_fit_mode {
    KELP_FIT_RESIZE = 0, /* stretch the region to (out_h, out_w) */
    KELP_FIT_LETTERBOX,  /* keep the aspect ratio, center, pad with `fill` */
} kelp_fit_mode;

typedef struct kelp_augment_config {
    int out_h, out_w;
    int out_c;         /* 0: as many channels as the input */
    kelp_fit_mode fit;
    uint8_t fill;      /* pixel value where no source pixel lands */

    /* torchvision RandomResizedCrop: area fraction in [scale_min, scale_max], aspect ratio w/h log-uniform in
     * [ratio_min, ratio_max], 10 tries, then a center crop clamped to the ratio range. */
    bool random_resized_crop;
    float scale_min, scale_max, ratio_min, ratio_max;
    int pad;           /* pad-and-crop (CIFAR): pad the fitted image by `pad`, crop back at a random place; 0 = off */
    bool hflip, vflip; /* each with probability 1/2 */
    bool rot90;        /* 0, 1, 2 or 3 quarter turns, equally likely */
    float brightness;  /* factor drawn in [1 - brightness, 1 + brightness]; 0 = off */
    float contrast;    /* factor drawn in [1 - contrast, 1 + contrast] around the image mean; 0 = off */

    /* A box that leaves the output is clipped to it and dropped when less than min_box_visible of its area
     * remains or when its clipped width or height is below min_box_side pixels. */
    float min_box_visible, min_box_side;
} kelp_augment_config;

/* Eval mode at (out_h, out_w): stretch fit, fill 0, every random op off; RandomResizedCrop's torchvision ranges
 * (scale 0.08..1, ratio 3/4..4/3) and the box rules (25%, 2 px) preset for when they are switched on. */
void kelp_augment_config_init(kelp_augment_config *cfg, int out_h, int out_w);
/* Switches every random op off, keeping the fit: the eval-mode twin of a training config. */
void kelp_augment_config_eval(kelp_augment_config *cfg);
/* KELP_ERR_INVALID_ARG naming the first field out of range. */
kelp_status kelp_augment_config_check(const kelp_augment_config *cfg);
/* The number of output channels for an input of in_c channels. */
int kelp_augment_out_channels(const kelp_augment_config *cfg, int in_c);

/* One sample's drawn parameters. Quarter turns are counterclockwise (numpy.rot90); the flips apply after the turns;
 * the crop is a region of the turned, flipped image; output pixel (x, y) shows pixel (x + shift_x, y + shift_y) of
 * the fitted region. */
typedef struct kelp_augment_plan {
    int quarter_turns;
    bool hflip, vflip;
    int crop_x, crop_y, crop_w, crop_h;
    int shift_x, shift_y;
    float brightness, contrast; /* factors; 1 = unchanged */
} kelp_augment_plan;

/* The identity plan for an h x w image: no turn, no flip, the whole image, no shift, factors 1. */
void kelp_augment_plan_identity(int h, int w, kelp_augment_plan *plan);
/* Draws the plan of the sample `key` for an h x w image; a pure function of (cfg, seed, key, h, w). */
kelp_status kelp_augment_plan_sample(const kelp_augment_config *cfg, uint64_t seed, uint64_t key, int h, int w,
                                     kelp_augment_plan *plan);

typedef struct kelp_augment_input {
    const uint8_t *pixels;     /* h*w*c, HWC */
    int h, w, c;
    const uint8_t *mask;       /* h*w, or NULL */
    const float *boxes;        /* n_boxes*4: x1,y1,x2,y2 in pixels, or NULL */
    const int32_t *box_labels; /* n_boxes */
    int n_boxes;
} kelp_augment_input;

typedef struct kelp_augment_output {
    uint8_t *pixels;           /* out_h*out_w*out_c */
    uint8_t *mask;             /* out_h*out_w; NULL when not wanted (then the input mask is ignored) */
    float *boxes;              /* max_boxes*4; NULL when not wanted */
    int32_t *box_labels;       /* max_boxes */
    int max_boxes;
    int n_boxes;               /* set: how many boxes survived */
} kelp_augment_output;

/* Applies a plan (drawn for this input's h, w). More surviving boxes than max_boxes is KELP_ERR_SHAPE. */
kelp_status kelp_augment_apply(const kelp_augment_config *cfg, const kelp_augment_plan *plan,
                               const kelp_augment_input *in, kelp_augment_output *out);
/* kelp_augment_plan_sample, then kelp_augment_apply. */
kelp_status kelp_augment_sample(const kelp_augment_config *cfg, uint64_t seed, uint64_t key,
                                const kelp_augment_input *in, kelp_augment_output *out);

/* out = (pixel / 255 - mean[ch]) / std[ch] over n_pixels pixels of c channels (HWC or NHWC alike). */
kelp_status kelp_augment_normalize(const uint8_t *pixels, size_t n_pixels, int c, const float *mean,
                                   const float *std, float *out);

/* The counter-based generator behind the plans (splitmix64's finalizer over key + counter), exposed for the
 * loader's shuffle: the n-th draw of a stream depends only on (seed, stream, n). */
typedef struct kelp_aug_rng {
    uint64_t key, counter;
} kelp_aug_rng;

kelp_aug_rng kelp_aug_rng_make(uint64_t seed, uint64_t stream);
uint64_t kelp_aug_rng_next(kelp_aug_rng *rng);
/* Uniform in [0, n), without modulo bias; 0 when n is 0. */
uint64_t kelp_aug_rng_below(kelp_aug_rng *rng, uint64_t n);

#ifdef __cplusplus
}
#endif
#endif
