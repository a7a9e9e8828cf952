/* Dynamic loss scaling with PyTorch GradScaler's semantics, for training in fp16/bf16: the loss gradient is seeded
 * with `scale` instead of 1 so that small gradients survive half precision; before the optimizer (and before
 * gradient clipping) the gradients are unscaled; a step whose gradients hold inf or NaN is skipped and the scale
 * halved; after `growth_interval` clean steps in a row the scale doubles, unless that would overflow it.
 *
 *   KELP_TRY(kelp_train_step_run(step, lr, s.scale, &result)); // engine/train_step.h: check, unscale, clip, update
 *   kelp_loss_scaler_update(&s, result.applied);
 *
 * or with the separate calls:
 *
 *   kelp_graph_set_loss_scale(g, s.scale); forward; backward;
 *   KELP_TRY(kelp_unscale_grads(be, grads, n, segments, n_segments, kelp_loss_scaler_inverse(&s), &finite));
 *   if (finite) { clip; step; }
 *   kelp_loss_scaler_update(&s, finite);
 *
 * The logic is the same for every backend and precision, and is tested on the CPU in fp32. */
#ifndef KELP_ENGINE_LOSS_SCALE_H
#define KELP_ENGINE_LOSS_SCALE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct kelp_loss_scaler {
    float scale;           /* GradScaler's init_scale: 2^16 */
    float growth_factor;   /* 2 */
    float backoff_factor;  /* 0.5 */
    int64_t growth_interval; /* 2000 */
    int64_t clean_steps;   /* GradScaler's growth tracker: finite steps since the last change of scale */
    int64_t skipped_steps; /* steps skipped for inf/NaN gradients, for reports */
} kelp_loss_scaler;

void kelp_loss_scaler_init(kelp_loss_scaler *s);
/* The reciprocal used to unscale, computed as GradScaler does (double, then rounded to float). */
float kelp_loss_scaler_inverse(const kelp_loss_scaler *s);
/* After a step: backs off (and counts a skip) when the gradients were not finite, else counts a clean step and
 * grows the scale after growth_interval of them. */
void kelp_loss_scaler_update(kelp_loss_scaler *s, bool finite);

#endif
