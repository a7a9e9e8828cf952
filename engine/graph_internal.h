/* The graph's internal structure, shared by graph_build.c (JSON -> nodes, shapes, parameters, memory plan),
 * graph_run.c (forward, backward) and weights.c (safetensors). */
#ifndef KELP_ENGINE_GRAPH_INTERNAL_H
#define KELP_ENGINE_GRAPH_INTERNAL_H

#include <cjson/cJSON.h>

#include "engine/backend.h"
#include "engine/layer.h"
#include "engine/optimizer.h"
#include "kelp/kelp.h"

/* A value is a graph input or a node output: the edges of the DAG. */
typedef struct kelp_value {
    char *name;
    kelp_shape shape;       /* at the planned batch */
    kelp_dtype dtype;
    bool batched;           /* dim 0 follows the run-time batch (false for the scalar loss) */
    int producer;           /* node index, -1 for graph inputs */
    int last_consumer;      /* highest node index that reads it, -1 if none */
    bool has_grad;          /* a gradient buffer is planned */
    int written_by;         /* node whose forward writes it: the producer, or the head of the fused chain it ends */
    bool elided;            /* inside a fused chain: never written, no memory */
    kelp_tensor t, grad;    /* views into the arena at the current batch */
} kelp_value;

typedef struct kelp_graph_param {
    char *name;             /* "<node>.<suffix>" */
    kelp_param_spec spec;
    int node;
    size_t offset;          /* bytes into params/grads (trainable) or buffers */
    bool frozen;
    kelp_tensor value, grad;
    kelp_tensor value_lp, grad_lp; /* trainable, under mixed precision: in the activations' storage type */
} kelp_graph_param;

typedef struct kelp_node {
    char *name;
    const kelp_layer_type *type;
    void *attrs;
    int n_in;
    int in[KELP_MAX_INPUTS];     /* value indices */
    int out;                     /* value index */
    int n_params;
    int param[KELP_MAX_PARAMS];  /* indices into graph params */
    size_t state_bytes;
    void *state;                 /* in the arena */
    bool needs_backward;         /* recomputed when parameters are frozen */
    int fused_next;              /* in a fused chain: the chain's next node (always after it); 0 at its end/outside */
    bool fused;                  /* runs inside the convolution of an earlier node (the chain's head) */
} kelp_node;

/* One node's share of the per-node profile (kelp_graph_set_profiling). */
typedef struct kelp_node_timing {
    double forward_seconds, backward_seconds;
    int64_t forward_calls, backward_calls;
} kelp_node_timing;

/* Work queued after a training step's backward: fn(ctx). */
typedef struct kelp_step_tail {
    kelp_status (*fn)(void *ctx);
    void *ctx;
} kelp_step_tail;

struct kelp_graph {
    kelp_ctx *ctx;
    kelp_backend *be;
    kelp_graph_options options;
    cJSON *model;                /* the model file, kept for names, normalization and class names */

    int n_values, n_nodes, n_params;
    kelp_value *values;
    kelp_node *nodes;
    kelp_graph_param *params;
    int n_inputs, n_outputs;
    int *input_values, *output_values;
    int label_value, loss_node;  /* -1 without loss */

    size_t params_bytes, buffers_bytes, arena_bytes, workspace_bytes, arena_unplanned_bytes;
    void *params_mem, *grads_mem, *buffers_mem, *arena, *workspace;
    kelp_tensor params_tensor, grads_tensor;
    /* Mixed precision (options.precision not F32): the trainable parameters and their gradients once more, in
     * the activations' storage type, element for element as in params_mem and grads_mem. */
    void *params_lp_mem, *grads_lp_mem;
    bool params_lp_stale;        /* params_mem changed since params_lp_mem was converted from it */

    int batch;                   /* current run-time batch */
    bool training;
    uint64_t step;               /* forward passes in training mode: seeds dropout */
    int64_t *step_counter;       /* training graphs: `step` in backend memory, which dropout reads and a training
                                    forward advances on the backend, so that a recorded step draws anew each replay */
    float loss_scale;            /* the loss gradient's seed in backward: 1 unless mixed precision scales it */
    float *loss_seed;            /* backend scalar that is the loss's gradient: written only when the scale changes,
                                    so that a recorded training step reads it instead of carrying an upload */
    float loss_seed_written;     /* what loss_seed holds (0: nothing yet) */
    kelp_node_timing *profile;   /* one per node while profiling is on, NULL otherwise */
    float *fold;                 /* backend scratch for a fused chain's scale and shift (graph_fuse.c) */
    /* replayed inference forwards and training steps (graph_replay.c) */
    void *replay;                /* the backend's recording of a forward at replay_batch, or NULL */
    int replay_batch, warm_batch; /* warm_batch: the batch of the last plain forward (0: none yet) */
    kelp_step_tail tail, replay_tail; /* this step's work after backward, and the one the recording holds */
    bool replay_off;             /* capture failed or is not offered: plain forwards from now on */
    char replay_off_why[256];    /* the backend's message when it turned off (for tests and diagnosis) */
};

/* One training step: zero_grad, forward, backward, then tail (the optimizer's update, engine/train_step.c), which
 * a recorded step holds too. A recording is made for one tail: another tail (or none) records again. */
kelp_status kelp_graph_train_step(kelp_graph *g, kelp_step_tail tail);
/* Drops the recording and the step's tail when they belong to ctx (an owner going away). */
void kelp_graph_forget_tail(kelp_graph *g, const void *ctx);
/* The loss, a float scalar in backend memory; NULL without a loss. */
const float *kelp_graph_loss_value(const kelp_graph *g);

/* Inference fusion (graph_fuse.c): in a graph built without training, finds conv2d -> batch_norm -> relu chains
 * (before memory planning: their inner values get no memory), and runs one as a single convolution. */
kelp_status kelp_graph_plan_fusion(kelp_graph *g);
kelp_status kelp_graph_forward_fused(kelp_graph *g, int head);
/* Every node's forward, in order, one call each (graph_run.c). */
kelp_status kelp_graph_forward_nodes(kelp_graph *g);
/* An inference forward through a recorded replay where the backend offers one (graph_replay.c); false when the
 * graph cannot be replayed and the caller runs kelp_graph_forward_nodes. */
bool kelp_graph_replayable(const kelp_graph *g);
kelp_status kelp_graph_forward_replayed(kelp_graph *g);
/* Writes the loss scale into the loss's gradient when it changed (graph_run.c). */
kelp_status kelp_graph_write_loss_seed(kelp_graph *g);
void kelp_graph_replay_drop(kelp_graph *g);
/* Whether a value is one of the graph's outputs (graph_run.c). */
bool kelp_graph_is_output(const kelp_graph *g, int value);
/* The layer arguments of node `index` (graph_run.c); backward adds the gradients. */
void kelp_graph_fill_io(kelp_graph *g, int index, kelp_layer_io *io, bool backward);

/* Under mixed precision: brings the parameters' low-precision copy up to date before a forward, and adds the
 * low-precision gradients of a backward into the float ones (graph_run.c). No-ops in F32. */
kelp_status kelp_graph_refresh_params_lp(kelp_graph *g);
void kelp_graph_mark_params_changed(kelp_graph *g);

/* Places the arena and points every value, gradient and state into it (graph_plan.c). */
kelp_status kelp_graph_plan_memory(kelp_graph *g);
/* Recomputes which nodes need backward and which inputs need gradients (after freezing). */
void kelp_graph_update_requires_grad(kelp_graph *g);
/* Initializes every parameter and buffer with its spec's initializer, seeded from the context (param_init.c). */
kelp_status kelp_graph_init_params(kelp_graph *g);

/* Trainable ranges of the parameter buffer, in elements, skipping frozen parameters (the optimizer's segments);
 * -1 when more than max_segments are needed. */
int kelp_graph_trainable_segments(const kelp_graph *g, kelp_param_segment *segments, int max_segments);

/* Names starting with this prefix are kelp's own (checkpoint state in a weights file): no node may take one, and
 * loading weights passes over such tensors. */
#define KELP_RESERVED_PREFIX "kelp."

struct kelp_st_record;
struct kelp_st_meta;
/* The graph's parameters and buffers in PyTorch's layouts, plus `extra` records and metadata, to one safetensors
 * file (atomically). */
kelp_status kelp_graph_write_safetensors(kelp_graph *g, const char *path, const struct kelp_st_record *extra,
                                        size_t n_extra, const struct kelp_st_meta *meta, size_t n_meta);

uint64_t kelp_graph_step(const kelp_graph *g);
kelp_status kelp_graph_set_step(kelp_graph *g, uint64_t step);
const cJSON *kelp_graph_model(const kelp_graph *g);

#endif
