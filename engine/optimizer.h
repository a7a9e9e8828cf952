/* Optimizers (torch.optim.SGD and torch.optim.AdamW semantics) and gradient clipping by global norm.
 *
 * Parameters and gradients each live in one contiguous f32 buffer of backend memory, so a step is one pass over
 * the buffer, or over a list of segments (offset, count) when some parameters are frozen: elements outside the
 * segments do not move at all, not even through weight decay, as in PyTorch where requires_grad=False parameters
 * are left out of the optimizer.
 *
 * The step count is the optimizer's, not per parameter: a parameter that joins training after the first step
 * (unfrozen later) starts from zero state with the current bias correction, which matches PyTorch for SGD with
 * dampening 0 but not for AdamW or a damped SGD.
 *
 * Resuming: the state tensors (kelp_optimizer_state) and the step count (kelp_optimizer_step_count) are the whole
 * state; restoring them into a fresh optimizer continues bit-identically. */
#ifndef KELP_ENGINE_OPTIMIZER_H
#define KELP_ENGINE_OPTIMIZER_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/backend.h"

typedef enum kelp_optimizer_kind { KELP_OPTIM_SGD = 0, KELP_OPTIM_ADAMW } kelp_optimizer_kind;

typedef struct kelp_optimizer_config {
    kelp_optimizer_kind kind;
    float weight_decay;          /* SGD: added to the gradient (L2); AdamW: decoupled, param *= 1 - lr * wd */
    float momentum, dampening;   /* SGD */
    bool nesterov;               /* SGD; needs momentum > 0 and dampening 0 */
    float beta1, beta2, eps;     /* AdamW */
} kelp_optimizer_config;

/* PyTorch's defaults: SGD momentum 0, dampening 0, weight_decay 0; AdamW betas (0.9, 0.999), eps 1e-8,
 * weight_decay 0.01. */
kelp_optimizer_config kelp_optimizer_defaults(kelp_optimizer_kind kind);

/* Checks the ranges PyTorch checks (0 <= beta < 1, nesterov needs momentum and no dampening...). */
kelp_status kelp_optimizer_config_check(const kelp_optimizer_config *config);

/* Parses {"type": "sgd"|"adamw", ...} on top of that type's defaults. SGD fields: momentum, dampening, nesterov,
 * weight_decay; AdamW fields: beta1, beta2, eps, weight_decay. Any other field is an error naming it. */
kelp_status kelp_optimizer_config_parse(const cJSON *json, kelp_optimizer_config *out);

/* "sgd" or "adamw". */
const char *kelp_optimizer_kind_name(kelp_optimizer_kind kind);

/* A trainable range of the parameter buffer, in elements. */
typedef struct kelp_param_segment {
    int64_t offset, count;
} kelp_param_segment;

/* Checks a segment list against a buffer of n elements: in range, increasing, not overlapping; NULL with
 * n_segments 0 means the whole buffer. Errors start with `what`. */
kelp_status kelp_param_segments_check(const char *what, const kelp_param_segment *segments, int n_segments,
                                      int64_t n);

typedef struct kelp_optimizer kelp_optimizer;

/* An optimizer for a buffer of n parameters on `be`. Its state buffers are allocated and zeroed here, so they can
 * be restored from a checkpoint before the first step. */
kelp_status kelp_optimizer_create(kelp_backend *be, const kelp_optimizer_config *config, int64_t n,
                                  kelp_optimizer **out);
void kelp_optimizer_destroy(kelp_optimizer *opt);

const kelp_optimizer_config *kelp_optimizer_get_config(const kelp_optimizer *opt);
int64_t kelp_optimizer_param_count(const kelp_optimizer *opt); /* the n it was created for */

/* One step with learning rate lr on params (n) from grads (n), both backend memory. segments lists the trainable
 * ranges in increasing, non-overlapping order; NULL (with n_segments 0) means the whole buffer. */
kelp_status kelp_optimizer_step(kelp_optimizer *opt, float lr, float *params, const float *grads,
                                const kelp_param_segment *segments, int n_segments);

/* The same step in two halves, for a step whose scalars live in the caller's backend memory (engine/train_step.c,
 * where a GPU records the whole training step once and replays it):
 * kelp_optimizer_step_scalars fills a host kelp_step_ctl for the next step (learning rate, bias corrections, first
 * step; no loss scale, no clipping, no skip) for the caller to adjust and upload; kelp_optimizer_queue queues the
 * updates, which read a ctl in backend memory when they run. Neither counts the step: the caller, who learns
 * whether the step was applied, calls kelp_optimizer_set_step_count. */
kelp_status kelp_optimizer_step_scalars(const kelp_optimizer *opt, float lr, kelp_step_ctl *ctl);
kelp_status kelp_optimizer_queue(kelp_optimizer *opt, const kelp_step_ctl *ctl, float *params, const float *grads,
                                 const kelp_param_segment *segments, int n_segments);

/* State tensors for checkpoints: SGD with momentum has "momentum_buffer"; AdamW has "exp_avg" and "exp_avg_sq";
 * plain SGD has none. Each is a 1-D f32 tensor of n elements in backend memory, owned by the optimizer, laid out
 * like the parameter buffer. */
int kelp_optimizer_state_count(const kelp_optimizer *opt);
kelp_status kelp_optimizer_state(kelp_optimizer *opt, int index, const char **name, kelp_tensor *out);

/* Steps taken so far (PyTorch's state['step']). */
int64_t kelp_optimizer_step_count(const kelp_optimizer *opt);
kelp_status kelp_optimizer_set_step_count(kelp_optimizer *opt, int64_t steps);

/* *acc (a double in backend memory) += the sum of squares of grads (n) over the segments (NULL: the whole buffer),
 * queued without a wait. */
kelp_status kelp_grads_sum_squares(kelp_backend *be, const float *grads, int64_t n, const kelp_param_segment *segments,
                                   int n_segments, double *acc);

/* torch.nn.utils.clip_grad_norm_ over the segments of grads (n) (NULL segments: the whole buffer): total =
 * sqrt(sum g^2), and when max_norm / (total + 1e-6) < 1 every gradient in the segments is scaled by it. The total
 * norm before clipping goes to *total_norm, also when it is not finite: then the result is KELP_ERR_NUMERIC and
 * grads are untouched (a mixed-precision step is skipped, not applied with NaN). */
kelp_status kelp_clip_grad_norm(kelp_backend *be, float *grads, int64_t n, const kelp_param_segment *segments,
                                int n_segments, double max_norm, double *total_norm);

/* GradScaler's unscale_ (engine/loss_scale.h): *finite says whether every gradient in the segments is finite; if so
 * they are multiplied by inv_scale, else left as they are (the step is to be skipped). */
kelp_status kelp_unscale_grads(kelp_backend *be, float *grads, int64_t n, const kelp_param_segment *segments,
                               int n_segments, float inv_scale, bool *finite);

#endif
