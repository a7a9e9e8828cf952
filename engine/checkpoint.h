/* Training checkpoints.
 *
 * A checkpoint is ONE safetensors file, written atomically (temp file, fsync, rename, directory fsync):
 *   - the model's parameters and buffers under their PyTorch names and layouts, so a checkpoint also loads as plain
 *     weights (kelp_graph_load_weights, or safetensors.torch.load_file in PyTorch);
 *   - the optimizer state as "kelp.optimizer.<name>" tensors (flat, in kelp's internal parameter layout);
 *   - metadata "kelp.model" (the model file the graph was built from), "kelp.state" (the training position, JSON)
 *     and "kelp.config" (the run configuration, JSON).
 * One file rather than a folder keeps the write atomic with a single rename: a kill at any instant leaves the
 * previous checkpoint whole. */
#ifndef KELP_ENGINE_CHECKPOINT_H
#define KELP_ENGINE_CHECKPOINT_H

#include <stdint.h>

#include "engine/loss_scale.h"
#include "engine/optimizer.h"
#include "kelp/kelp.h"

typedef struct kelp_train_state {
    int64_t epoch;           /* the epoch in progress, from 0 */
    int64_t next_batch;      /* the first batch of `epoch` not yet trained */
    int64_t optimizer_steps; /* steps taken: the LR schedule's position and the optimizer's step count */
    uint64_t graph_step;     /* the graph's training-step counter (dropout streams) */
    double best_metric;      /* best validation top-1 so far; -1 before the first validation */
    int64_t best_epoch;
    kelp_loss_scaler scaler; /* the loss scale and its counters (saved whether or not the run scales) */
} kelp_train_state;

/* opt may be NULL (no optimizer state); config_json may be NULL. */
kelp_status kelp_checkpoint_save(const char *path, kelp_graph *g, kelp_optimizer *opt, const kelp_train_state *state,
                                 const char *config_json);

/* The model file stored in a checkpoint, to build the graph it was saved from, and (when config_json is not NULL)
 * the run configuration; free both with free(). */
kelp_status kelp_checkpoint_model(const char *path, char **model_json, char **config_json);

/* Loads parameters and buffers (strictly) and, when given, the optimizer state, the training position and the
 * run configuration (free with free()). Nothing is changed unless everything loads. */
kelp_status kelp_checkpoint_load(const char *path, kelp_graph *g, kelp_optimizer *opt, kelp_train_state *state,
                                 char **config_json);

/* A module bundle directory stands for its model/weights.safetensors (itself a checkpoint without optimizer
 * state), a file for itself: *weights (free with free()) is the checkpoint file to read. */
kelp_status kelp_checkpoint_resolve(const char *path, char **weights);

/* Writes the model, weights, buffers and run configuration of checkpoint `in` to `out` without the optimizer state
 * or the training position: what a bundle ships. `out` is replaced atomically. */
kelp_status kelp_checkpoint_strip(kelp_ctx *ctx, const char *in, const char *out);

#endif
