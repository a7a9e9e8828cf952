/* kelp: a CNN training and inference engine. Public C API.
 *
 * Usage sketch:
 *   kelp_ctx *ctx; kelp_ctx_create(NULL, &ctx);
 *   char *json; kelp_model_zoo_json("resnet18", NULL, &json);
 *   kelp_graph *g; kelp_graph_options o = kelp_graph_defaults(); o.batch = 8;
 *   kelp_graph_build(ctx, json, &o, &g);
 *   kelp_graph_load_weights(g, "resnet18.safetensors", KELP_LOAD_STRICT);
 *   upload images into kelp_graph_input(g, 0), kelp_graph_forward(g), read kelp_graph_output(g, 0).
 * Every call returns kelp_status; on failure kelp_last_error() says what failed. */
#ifndef KELP_KELP_H
#define KELP_KELP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kelp/status.h"
#include "kelp/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KELP_VERSION_STRING "0.1.0"

/* ---- context: one device, its backend, threads and seed. No global state. ---- */
typedef struct kelp_ctx kelp_ctx;

/* A CPU context sets OpenBLAS to one thread: kelp runs BLAS inside its own OpenMP threads, one pool for all. */
typedef struct kelp_ctx_options {
    const char *device; /* "cpu" (default) or "cuda[:N]" in a build with CUDA (docs/ARCHITECTURE.md, "CUDA") */
    int threads;        /* CPU threads; 0 = OMP_NUM_THREADS if set, else all cores */
    uint64_t seed;      /* seeds weight init, dropout, shuffling */
    /* GPU numerics, all off when zero; the CPU always computes in fp32 with deterministic kernels and ignores them. */
    bool allow_tf32;    /* convolutions and GEMMs may use TF32 tensor cores (PyTorch's allow_tf32) */
    bool nondeterministic; /* cuDNN algorithms whose results depend on scheduling are allowed (often faster) */
    bool autotune;      /* choose each convolution's algorithms by timing them once (cudnn.benchmark), not by
                         * cuDNN's heuristics */
    bool cuda_graphs;   /* inference forwards and training steps (kelp_graph_forward_backward, and kelp train's steps
                         * with their update) after the first two at a batch size replay a recorded CUDA graph (one
                         * launch instead of one per kernel); on in kelp_ctx_defaults, off when zero */
} kelp_ctx_options;

kelp_ctx_options kelp_ctx_defaults(void);
kelp_status kelp_ctx_create(const kelp_ctx_options *options, kelp_ctx **out);
void kelp_ctx_destroy(kelp_ctx *ctx);
struct kelp_backend *kelp_ctx_backend(kelp_ctx *ctx);
uint64_t kelp_ctx_seed(const kelp_ctx *ctx);
int kelp_ctx_threads(const kelp_ctx *ctx);

/* Backend-owned tensors (for callers outside a graph). */
kelp_status kelp_tensor_alloc(kelp_ctx *ctx, const kelp_shape *shape, kelp_dtype dtype, kelp_tensor *out);
void kelp_tensor_free(kelp_ctx *ctx, kelp_tensor *t);
kelp_status kelp_tensor_upload(kelp_tensor *t, const void *host, size_t bytes);
kelp_status kelp_tensor_download(const kelp_tensor *t, void *host, size_t bytes);
/* `count` floats into or out of a tensor stored as F32, BF16 or F16 (a graph's inputs and outputs under mixed
 * precision), converted on the host. */
kelp_status kelp_tensor_upload_floats(kelp_tensor *t, const float *host, int64_t count);
kelp_status kelp_tensor_download_floats(const kelp_tensor *t, float *host, int64_t count);

/* ---- graph: a DAG of layers built from a JSON model file (docs/model-format.md) ---- */
typedef struct kelp_graph kelp_graph;

typedef struct kelp_graph_options {
    int batch;          /* largest batch the graph will run; memory is planned for it */
    bool training;      /* plan for backward: keep activations, allocate gradients */
    bool with_loss;     /* append the model's "loss" node and a "label" input */
    bool input_grads;   /* also compute gradients with respect to the graph inputs (gradient checks) */
    /* Storage of activations, their gradients and the copy of the parameters that convolutions and linear layers
     * read: KELP_F32 (the default), or KELP_BF16 / KELP_F16 for mixed precision, where the parameters, their
     * gradients, batch-norm statistics, the loss and the optimizer stay float and every op computes in float. */
    kelp_dtype precision;
} kelp_graph_options;

kelp_graph_options kelp_graph_defaults(void);
/* A precision's CLI spelling, "fp32", "bf16" or "fp16", to its storage type; KELP_ERR_INVALID_ARG otherwise. */
kelp_status kelp_precision_parse(const char *name, kelp_dtype *out);
const char *kelp_precision_name(kelp_dtype precision);

kelp_status kelp_graph_build(kelp_ctx *ctx, const char *model_json, const kelp_graph_options *options,
                             kelp_graph **out);
/* Model files are small: a larger file is refused as not a model. */
#define KELP_MODEL_FILE_MAX_BYTES ((size_t)64 << 20)
kelp_status kelp_graph_build_file(kelp_ctx *ctx, const char *path, const kelp_graph_options *options,
                                  kelp_graph **out);
void kelp_graph_destroy(kelp_graph *g);

/* Runs with `batch` <= the planned batch. */
kelp_status kelp_graph_set_batch(kelp_graph *g, int batch);
int kelp_graph_batch(const kelp_graph *g);
/* Training mode: batch statistics in batch norm, dropout active. Only for graphs built with training. */
kelp_status kelp_graph_set_training(kelp_graph *g, bool training);

int kelp_graph_input_count(const kelp_graph *g);
kelp_tensor *kelp_graph_input(kelp_graph *g, int index);      /* shape reflects the current batch */
kelp_tensor *kelp_graph_input_grad(kelp_graph *g, int index); /* NULL unless built with input_grads */
const char *kelp_graph_input_name(const kelp_graph *g, int index);
int kelp_graph_output_count(const kelp_graph *g);
kelp_tensor *kelp_graph_output(kelp_graph *g, int index);
/* Gradient seed for an output of a graph without loss: write it after each forward, before backward, which
 * consumes it (like PyTorch's y.backward(grad)). With a loss, backward computes every gradient itself. */
kelp_tensor *kelp_graph_output_grad(kelp_graph *g, int index);
kelp_tensor *kelp_graph_label(kelp_graph *g); /* i32 labels, NULL without loss */

kelp_status kelp_graph_forward(kelp_graph *g);
/* Accumulates into the gradient buffer (like PyTorch); call kelp_graph_zero_grad between steps. */
kelp_status kelp_graph_backward(kelp_graph *g);
kelp_status kelp_graph_zero_grad(kelp_graph *g);
/* One training step's gradients: zero_grad, forward and backward of a graph with a loss, in training mode. On a
 * backend that records its work (CUDA graphs) the three are recorded once per batch size and replayed with one
 * call (engine/graph_replay.c); a profiled graph, or one whose recording failed, runs them one after the other,
 * with the same results. */
kelp_status kelp_graph_forward_backward(kelp_graph *g);
/* Backward seeds the loss gradient with `scale` (default 1): dynamic loss scaling (engine/loss_scale.h). */
kelp_status kelp_graph_set_loss_scale(kelp_graph *g, float scale);
kelp_status kelp_graph_loss(kelp_graph *g, float *loss);

/* Parameters: trainable ones in one contiguous f32 buffer, gradients in a second of the same layout; buffers
 * (running statistics, counters) in a third region without gradients. */
typedef enum kelp_param_kind { KELP_PARAM_TRAINABLE = 0, KELP_PARAM_BUFFER } kelp_param_kind;

typedef struct kelp_param_info {
    const char *name;   /* torchvision-style "layer1.0.conv1.weight" */
    kelp_shape shape;   /* PyTorch's shape (conv weight OIHW) */
    kelp_dtype dtype;
    kelp_param_kind kind;
    size_t offset;      /* in bytes, into the trainable buffer (f32) or the buffer region (f32, i64) */
    bool frozen;
} kelp_param_info;

int kelp_graph_param_count(const kelp_graph *g);
kelp_status kelp_graph_param_info(const kelp_graph *g, int index, kelp_param_info *out);
/* Views for writing parameters: the float values (conv weights are OHWI internally). Under mixed precision an
 * inference forward reads a low-precision copy, converted again after a call to one of these two: write through a
 * view obtained after the last forward, not one kept from before it. (A training forward always converts.) */
kelp_status kelp_graph_find_param(kelp_graph *g, const char *name, kelp_tensor *value, kelp_tensor *grad);
kelp_tensor *kelp_graph_params(kelp_graph *g); /* the whole trainable buffer, 1-D f32 */
kelp_tensor *kelp_graph_grads(kelp_graph *g);  /* same layout as kelp_graph_params */
/* Freezes (frozen = true) or unfreezes the parameters whose name starts with `prefix`, a plain string prefix:
 * "layer1." matches layer1.0.conv1.weight but not layer10.*. Frozen parameters get no gradient and are left out of
 * kelp_graph_trainable_segments, so optimizers do not move them. KELP_ERR_NOT_FOUND when nothing matches. */
kelp_status kelp_graph_freeze(kelp_graph *g, const char *prefix, bool frozen);

/* Nodes, for summaries. */
typedef struct kelp_node_info {
    const char *name, *type;
    kelp_shape output;      /* at the planned batch */
    int64_t parameters;     /* trainable elements */
} kelp_node_info;
int kelp_graph_node_count(const kelp_graph *g);
kelp_status kelp_graph_node_info(const kelp_graph *g, int index, kelp_node_info *out);

/* Per-node profile, as Caffe's `caffe time`. Off by default, and then it costs one branch per node. When on, each
 * node's forward and backward is timed (CLOCK_MONOTONIC) between two synchronizations of the backend, so that a
 * node is timed for its own work even on an asynchronous backend, which loses its overlap between nodes for it. */
typedef struct kelp_node_profile {
    const char *name, *type;
    int64_t forward_calls, backward_calls;
    double forward_seconds, backward_seconds; /* summed over the calls since profiling was enabled or reset */
    /* Of one call at the current batch, 2 per multiply-add; 0 for layer types that do not count them (all but
     * conv2d, conv_transpose2d and linear). Backward counts the input and weight gradients the graph computes. */
    int64_t forward_flops, backward_flops;
    bool folded; /* an inference graph runs it inside the convolution before it (batch norm, ReLU): no calls */
} kelp_node_profile;

/* Enabling starts the counters at zero (and keeps them when already on); disabling drops them. */
kelp_status kelp_graph_set_profiling(kelp_graph *g, bool enabled);
void kelp_graph_reset_profile(kelp_graph *g);
/* Node `index` in kelp_graph_node_info's order; calls and seconds are 0 while profiling is off. */
kelp_status kelp_graph_node_profile(const kelp_graph *g, int index, kelp_node_profile *out);

/* Fills every graph input with U(-1, 1) and the labels, if any, with classes drawn uniformly from the loss's
 * classes: stand-in data for benchmarks, reproducible from the seed. */
kelp_status kelp_graph_fill_random(kelp_graph *g, uint64_t seed);

/* Memory the graph planned, in bytes. */
typedef struct kelp_graph_memory {
    size_t params, grads, buffers, activations, workspace;
    size_t activations_unplanned; /* what the arena would take without liveness planning */
} kelp_graph_memory;
void kelp_graph_memory_usage(const kelp_graph *g, kelp_graph_memory *out);

/* ---- weights: safetensors in PyTorch layouts and names ---- */
typedef enum kelp_load_flags {
    KELP_LOAD_STRICT = 0,          /* every parameter present, no extra tensors */
    KELP_LOAD_ALLOW_MISSING = 1,   /* parameters absent from the file keep their values */
    KELP_LOAD_ALLOW_UNEXPECTED = 2, /* tensors the graph does not know are ignored */
    KELP_LOAD_SKIP_MISMATCHED = 4, /* tensors of another shape are skipped (a new classifier head) */
} kelp_load_flags;

kelp_status kelp_graph_save_weights(kelp_graph *g, const char *path);
kelp_status kelp_graph_load_weights(kelp_graph *g, const char *path, int flags);
/* Copies parameter `index` (or, with `grad`, its gradient) to host memory in PyTorch's layout and dtype, as
 * kelp_graph_save_weights writes it; `bytes` must be its exact size. Only trainable parameters of a training graph
 * have a gradient. */
kelp_status kelp_graph_read_param(kelp_graph *g, int index, bool grad, void *host, size_t bytes);

/* ---- model zoo ---- */
/* Names of the zoo models, NULL-terminated. */
const char *const *kelp_model_zoo_names(void);
/* One line describing a zoo model, NULL for an unknown name. */
const char *kelp_model_zoo_description(const char *name);

typedef struct kelp_zoo_options {
    int num_classes;              /* 0: the model's default (1000 for ImageNet models) */
    int height, width, channels;  /* 0: the model's default input */
} kelp_zoo_options;

/* JSON model file text for a zoo model; free with kelp_free. options may be NULL. */
kelp_status kelp_model_zoo_json(const char *name, const kelp_zoo_options *options, char **json_out);
void kelp_free(void *p);

/* The registered layer types: count, and the name of each (NULL outside [0, count)). */
int kelp_layer_type_count(void);
const char *kelp_layer_type_name(int index);

#ifdef __cplusplus
}
#endif
#endif
