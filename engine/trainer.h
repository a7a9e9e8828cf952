/* Training a classifier from an HDF5 dataset: the loop behind `kelp train`.
 *
 * A run directory holds metrics.jsonl (one JSON object per logged step and per epoch), last.ckpt (after every
 * epoch, and when a run stops early) and best.ckpt (the epoch with the best validation top-1). Checkpoints carry the
 * model, the weights, the optimizer state, the position in the data and the run options, so `--resume` continues
 * exactly: on the CPU the per-step losses of a stopped and resumed run equal those of an uninterrupted one.
 *
 * The library reports progress through a callback and never prints. */
#ifndef KELP_ENGINE_TRAINER_H
#define KELP_ENGINE_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "kelp/kelp.h"

typedef struct kelp_train_options {
    const char *data;            /* the HDF5 dataset */
    const char *model;           /* a zoo name or a JSON model file */
    const char *out;             /* the run directory (created) */
    int input_h, input_w;        /* zoo models: the input size; 0 = the model's default */
    int epochs, batch;
    const char *optimizer;       /* "sgd" or "adamw" */
    double lr, momentum, weight_decay;
    const char *schedule;        /* LR schedule, engine/lr_schedule.h's CLI grammar ("cosine", "warmup:200+cosine") */
    double clip_norm;            /* 0 = no clipping */
    /* Dynamic loss scaling with GradScaler's semantics (engine/loss_scale.h): what fp16 training needs; in fp32 it
     * changes nothing but rounding, and skips steps whose gradients are not finite instead of failing. */
    bool loss_scale;
    /* "fp32" (default), or "bf16" / "fp16" mixed precision (kelp_graph_options.precision); fp16 turns loss scaling
     * on, since its gradients underflow without it. */
    const char *precision;
    double label_smoothing;
    const char *device;          /* "cpu" (default) or "cuda[:N]" */
    /* GPU numerics (kelp_ctx_options): TF32 tensor cores, non-deterministic algorithms allowed, timed convolution
     * algorithms; all off by default. Like the device, they are the caller's on resume. */
    bool allow_tf32, nondeterministic, autotune;
    int threads;                 /* compute threads, 0 = all cores */
    int loader_threads;          /* 0 = 1 */
    uint64_t seed;
    /* augmentation (train split only; validation only fits images to the input) */
    bool hflip, vflip, rot90, random_resized_crop;
    int pad_crop;
    double jitter;               /* brightness and contrast amplitude */
    bool letterbox;              /* fit variable-size images by letterboxing instead of stretching */
    /* fine-tuning */
    const char *init_from;       /* weights or checkpoint: every tensor that fits is loaded, a new head is kept */
    bool freeze_backbone;        /* train only the output layer */
    /* control */
    bool resume;                 /* continue `out`/last.ckpt */
    int64_t stop_after_steps;    /* stop (with a checkpoint) after this many steps in total; 0 = run to the end */
    int log_every;               /* steps between metrics.jsonl step lines; 0 = 50 */
} kelp_train_options;

void kelp_train_options_defaults(kelp_train_options *o);

typedef enum kelp_train_event_kind {
    KELP_TRAIN_STEP = 0,   /* after every optimizer step */
    KELP_TRAIN_EPOCH,      /* after an epoch and its validation */
    KELP_TRAIN_MESSAGE,    /* a line of text for the user (what was loaded, resumed, saved) */
} kelp_train_event_kind;

typedef struct kelp_train_event {
    kelp_train_event_kind kind;
    int64_t epoch, epochs;         /* from 0 */
    int64_t batch, batches;        /* within the epoch */
    int64_t step, steps;           /* optimizer steps, over the run */
    double loss, accuracy, lr, images_per_second;
    double val_loss, val_accuracy; /* KELP_TRAIN_EPOCH; -1 without a validation split */
    bool best;                     /* KELP_TRAIN_EPOCH: a new best checkpoint */
    const char *message;           /* KELP_TRAIN_MESSAGE */
} kelp_train_event;

typedef void (*kelp_train_callback)(void *user, const kelp_train_event *event);

kelp_status kelp_train(const kelp_train_options *options, kelp_train_callback callback, void *user);

/* The options a run was made with (a checkpoint's run configuration, JSON), over `base` for whatever it does not
 * say; init_from is cleared. String fields point into *keep, which the caller frees with kelp_train_config_free
 * after the run. */
kelp_status kelp_train_options_from_config(const char *config_json, const char *source, const kelp_train_options *base,
                                           kelp_train_options *out, void **keep);
void kelp_train_config_free(void *keep);

#endif
