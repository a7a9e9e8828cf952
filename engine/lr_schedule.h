/* Learning-rate schedules: a pure function lr(step) of a plain struct, so a resumed run needs no schedule state.
 *
 * `step` counts optimizer steps from 0: lr(0) is the rate of the first step (PyTorch's scheduler after 0 calls to
 * scheduler.step()). Main schedules, with t the step of the main schedule and T its length:
 *   constant   base
 *   step       base * gamma^floor(t / step_size)                          (StepLR)
 *   multistep  base * gamma^(number of milestones <= t)                   (MultiStepLR: decayed AT the milestone)
 *   cosine     min_lr + (base - min_lr) * (1 + cos(pi * t / T)) / 2, min_lr once t >= T   (CosineAnnealingLR)
 *   poly       base * (1 - min(t, T) / T)^power                           (PolynomialLR)
 * Optional linear warmup (LinearLR, then SequentialLR): for step < warmup_steps,
 *   lr = base * (f + (1 - f) * step / warmup_steps) with f = warmup_start_factor,
 * after which the main schedule runs on t = step - warmup_steps. total_steps is the whole run, warmup included,
 * so cosine and poly end with it: T = total_steps - warmup_steps.
 *
 * Compact CLI grammar (kelp_lr_schedule_parse_cli), numbers in C syntax, no spaces:
 *   spec      := [warmup "+"] main
 *   warmup    := "warmup:" STEPS [":" START_FACTOR]            default start factor 1/3, as LinearLR
 *   main      := "constant"
 *              | "step:" STEP_SIZE [":" GAMMA]                 default gamma 0.1
 *              | "multistep:" M1 ["," M2 ...] [":" GAMMA]      increasing milestones, default gamma 0.1
 *              | "cosine" [":" MIN_LR]                         default min_lr 0
 *              | "poly" [":" POWER]                            default power 1
 *   e.g. "cosine", "step:30:0.1", "multistep:30,60,80:0.1", "poly:0.9", "warmup:500:0.01+cosine:1e-5".
 * JSON (kelp_lr_schedule_parse_json): {"type": "constant"|"step"|"multistep"|"cosine"|"poly", "warmup_steps",
 * "warmup_start_factor", and by type "step_size", "gamma" (step); "milestones": [..], "gamma" (multistep);
 * "min_lr" (cosine); "power" (poly)}. Fields of another type are errors. */
#ifndef KELP_ENGINE_LR_SCHEDULE_H
#define KELP_ENGINE_LR_SCHEDULE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "kelp/status.h"

typedef enum kelp_lr_kind {
    KELP_LR_CONSTANT = 0,
    KELP_LR_STEP,
    KELP_LR_MULTISTEP,
    KELP_LR_COSINE,
    KELP_LR_POLY,
} kelp_lr_kind;

#define KELP_LR_MAX_MILESTONES 32

typedef struct kelp_lr_schedule {
    kelp_lr_kind kind;
    double base_lr;
    int64_t total_steps;       /* cosine, poly: the whole run, warmup included */
    int64_t step_size;         /* step */
    double gamma;              /* step, multistep */
    int n_milestones;          /* multistep: strictly increasing, counted in main-schedule steps */
    int64_t milestones[KELP_LR_MAX_MILESTONES];
    double min_lr;             /* cosine: eta_min */
    double power;              /* poly */
    int64_t warmup_steps;      /* 0: no warmup */
    double warmup_start_factor; /* in (0, 1] */
} kelp_lr_schedule;

/* A schedule of `kind` with PyTorch's defaults (gamma 0.1, power 1, min_lr 0, warmup start factor 1/3), no
 * warmup, no milestones. */
kelp_lr_schedule kelp_lr_schedule_defaults(kelp_lr_kind kind, double base_lr, int64_t total_steps);

/* Checks every field that the kind uses; messages name the field. */
kelp_status kelp_lr_schedule_check(const kelp_lr_schedule *s);

/* The learning rate of optimizer step `step` (0-based; negative steps count as 0). */
double kelp_lr_at(const kelp_lr_schedule *s, int64_t step);

/* base_lr and total_steps come from the caller (--lr, epochs x steps per epoch); the spec gives the shape.
 * Errors quote the part of the spec that is wrong. */
kelp_status kelp_lr_schedule_parse_cli(const char *spec, double base_lr, int64_t total_steps, kelp_lr_schedule *out);
kelp_status kelp_lr_schedule_parse_json(const cJSON *json, double base_lr, int64_t total_steps,
                                        kelp_lr_schedule *out);

/* "constant", "step", "multistep", "cosine", "poly". */
const char *kelp_lr_kind_name(kelp_lr_kind kind);

#endif
