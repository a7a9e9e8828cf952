/* Shape descriptors shared by every backend's kernels. Plain structs: kernels know nothing of graphs or tensors.
 * Layouts: activations NHWC, convolution weights OHWI (K,R,S,C/groups), matrices row-major.
 *
 * `dtype` is the storage type of the activations an op reads and writes (F32, or BF16/F16 under mixed
 * precision, kernels/ops/half.h); zero-initialized descriptors are F32. Parameters, statistics and losses are
 * always F32. */
#ifndef KELP_KERNELS_DESCS_H
#define KELP_KERNELS_DESCS_H

#include <stdbool.h>
#include <stdint.h>

#include "kelp/tensor.h"

/* x (N,H,W,C), w (K,R,S,C/G), y (N,OH,OW,K), OH = (H + 2*pad_h - dil_h*(R-1) - 1)/stride_h + 1 */
typedef struct kelp_conv_desc {
    int n, h, w, c;
    int k, r, s;
    int stride_h, stride_w;
    int pad_h, pad_w;
    int dil_h, dil_w;
    int groups;
    int oh, ow;
    kelp_dtype dtype; /* x, w, y, dx, dw, dy; the bias and db stay F32 */
} kelp_conv_desc;

/* What a fused inference convolution does to each output of channel k before storing it:
 * y = clamp(sum * scale[k] + shift[k]). scale NULL means 1 and shift NULL means 0, so {NULL, bias, NONE} is a
 * plain convolution with bias; a folded batch norm gives the scale and the shift, a following ReLU the clamp. */
typedef enum kelp_clamp_kind { KELP_CLAMP_NONE = 0, KELP_CLAMP_RELU, KELP_CLAMP_RELU6 } kelp_clamp_kind;

typedef struct kelp_conv_epilogue {
    const float *scale, *shift;
    kelp_clamp_kind clamp;
} kelp_conv_epilogue;

typedef enum kelp_pool_kind { KELP_POOL_MAX = 0, KELP_POOL_AVG } kelp_pool_kind;

/* x (N,H,W,C) -> y (N,OH,OW,C). Windows that start in padding are PyTorch's: max ignores padding; avg divides by
 * the window clipped to the padded input when count_include_pad, else by the window clipped to the input. */
typedef struct kelp_pool_desc {
    kelp_pool_kind kind;
    int n, h, w, c;
    int r, s;
    int stride_h, stride_w;
    int pad_h, pad_w;
    int oh, ow;
    bool count_include_pad;
    kelp_dtype dtype; /* x, y, dx, dy */
} kelp_pool_desc;

typedef enum kelp_act_kind {
    KELP_ACT_RELU = 0,
    KELP_ACT_LEAKY_RELU,
    KELP_ACT_SILU,
    KELP_ACT_SIGMOID,
    KELP_ACT_GELU, /* exact (erf) form, PyTorch's default */
    KELP_ACT_RELU6, /* min(max(x, 0), 6): MobileNetV2 */
} kelp_act_kind;

typedef enum kelp_upsample_kind { KELP_UPSAMPLE_NEAREST = 0, KELP_UPSAMPLE_BILINEAR } kelp_upsample_kind;

/* x (N,H,W,C) -> y (N,OH,OW,C). scale_h/scale_w map output to input coordinates as PyTorch does:
 * 1/scale_factor when a scale factor was given, H/OH otherwise. Bilinear uses align_corners=False. */
typedef struct kelp_upsample_desc {
    kelp_upsample_kind kind;
    int n, h, w, c;
    int oh, ow;
    float scale_h, scale_w;
    kelp_dtype dtype; /* x, y, dx, dy */
} kelp_upsample_desc;

/* logits (M,K) with rows = every pixel or sample, labels (M) int32, class_weights (K) or NULL. */
typedef struct kelp_xent_desc {
    int64_t rows;
    int classes;
    float label_smoothing;
    int ignore_index; /* labels equal to it add nothing; PyTorch's default is -100 */
    kelp_dtype dtype; /* logits and dlogits; the loss, probabilities and norm stay F32 */
} kelp_xent_desc;

/* Input preparation: NHWC uint8 pixels with c channels to (pixel / 255 - mean[ch]) / std[ch] (kernels/ops/prep.h). */
#define KELP_PREP_MAX_CHANNELS 4
typedef struct kelp_prep_desc {
    int64_t pixels; /* n * h * w */
    int c;
    float mean[KELP_PREP_MAX_CHANNELS], std[KELP_PREP_MAX_CHANNELS];
    kelp_dtype dtype; /* of the output */
} kelp_prep_desc;

/* A random stream (dropout's). With `step` NULL the stream's seed is `seed`; with `step`, a training graph's step
 * counter in backend memory, it is derived where it is used from seed, stream and *step (kelp_rng_seed_value,
 * kernels/ops/rng.h), so that a training step recorded once (CUDA graphs) draws each replay's own numbers. */
typedef struct kelp_rng_seed {
    uint64_t seed, stream;
    const int64_t *step;
} kelp_rng_seed;

/* The constant hyperparameters; what changes from step to step is in kelp_step_ctl. */
typedef struct kelp_sgd_params {
    float momentum, dampening, weight_decay;
    bool nesterov;
} kelp_sgd_params;

typedef struct kelp_adamw_params {
    float beta1, beta2, eps, weight_decay;
} kelp_adamw_params;

/* One optimizer step's scalars, in backend memory: a training step recorded once (CUDA graphs) and replayed reads
 * each step's values from here rather than from kernel arguments fixed at recording. The host writes the first
 * group before the step; on the device, sum_squares adds into sum_sq and step_check writes the second group
 * (kernels/ops/optim.h); the optimizer kernels read both, so that the host waits once, after the step, to learn
 * whether it was applied (engine/train_step.c). */
typedef struct kelp_step_ctl {
    /* written by the host */
    double max_norm;      /* clip the unscaled gradients' global norm to it; 0: no clipping */
    float lr;
    float bc1, bc2_sqrt;  /* AdamW's bias corrections for this step: 1 - beta1^t and sqrt(1 - beta2^t) */
    float inv_scale;      /* 1 / loss scale: the gradients are unscaled first (1 without loss scaling) */
    int32_t first_step;   /* SGD seeds its momentum buffer with the first gradient */
    int32_t check_grads;  /* sum_sq holds the gradients' sum of squares: a non-finite one skips the step */
    /* written on the device */
    double sum_sq;        /* of the (scaled) gradients in the trainable segments; the host zeroes it */
    double norm;          /* global norm of the unscaled gradients, before clipping (0 without check_grads) */
    float clip_coef;      /* 1, or max_norm / (norm + 1e-6) when that is below 1 */
    float loss;           /* the step's loss, copied so one download brings everything back */
    int32_t skip;         /* the loss or a gradient is not finite: the optimizer leaves everything as it is */
} kelp_step_ctl;

#endif
