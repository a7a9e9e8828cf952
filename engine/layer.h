/* The layer registry's vtable (Caffe's registry without its boilerplate).
 *
 * A layer type is device-agnostic: it parses its JSON fields into an attrs struct, infers its output shape, lists
 * its parameters, and runs forward/backward by calling backend kernels. Adding a layer = one file in
 * engine/layers/ + one line in engine/layer_registry.c + its tests.
 *
 * Shapes: activations are NHWC (rank 4) or (rows, features) (rank 2); dim 0 is the batch. At run time the tensors
 * in kelp_layer_io carry the current batch, which may be smaller than the planned one: layers compute their
 * descriptors from the tensors, never from the shapes seen at build time. */
#ifndef KELP_ENGINE_LAYER_H
#define KELP_ENGINE_LAYER_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "engine/backend.h"
#include "kelp/kelp.h"

#define KELP_MAX_INPUTS 8
#define KELP_MAX_PARAMS 5

typedef enum kelp_init_kind {
    KELP_INIT_ZEROS = 0,
    KELP_INIT_ONES,
    KELP_INIT_UNIFORM_FAN_IN,        /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for conv/linear */
    KELP_INIT_KAIMING_NORMAL_FAN_OUT, /* N(0, 2/fan_out): torchvision's ResNet convolutions */
} kelp_init_kind;

typedef struct kelp_param_spec {
    const char *suffix;     /* "weight", "bias", "running_mean"... the full name is "<node>.<suffix>" */
    kelp_shape shape;       /* PyTorch's shape, as serialized */
    kelp_dtype dtype;       /* F32, or I64 for num_batches_tracked */
    kelp_param_kind kind;   /* trainable (has a gradient) or buffer */
    kelp_init_kind init;
    int64_t fan_in, fan_out;
    bool ohwi;              /* stored internally as (O,H,W,I) while `shape` is PyTorch's (O,I,H,W) */
} kelp_param_spec;

typedef struct kelp_layer_io {
    kelp_backend *be;
    const void *attrs;
    const char *name;                      /* node name, for error messages */
    int n_in;
    const kelp_tensor *in[KELP_MAX_INPUTS];
    kelp_tensor *din[KELP_MAX_INPUTS];     /* backward: accumulate into these; NULL where no gradient is needed */
    kelp_tensor *out;
    kelp_tensor *dout;                     /* backward: gradient of the output */
    kelp_tensor *param[KELP_MAX_PARAMS];   /* in param_specs order; float */
    kelp_tensor *dparam[KELP_MAX_PARAMS];  /* accumulate into these; NULL for buffers and frozen parameters */
    /* Under mixed precision, the trainable parameters' copies in the activations' storage type (refreshed from
     * the float ones before a forward) and their gradients in that type (added into the float gradients after
     * backward); NULL otherwise. Matrix products read and write these (kelp_io_weight, kelp_io_dweight); batch
     * norm and biases use the float ones. */
    kelp_tensor *param_lp[KELP_MAX_PARAMS];
    kelp_tensor *dparam_lp[KELP_MAX_PARAMS];
    void *state;                           /* state_size bytes, kept from forward to backward */
    void *workspace;                       /* workspace_size bytes, shared by all nodes */
    bool training;                         /* batch statistics, dropout */
    kelp_rng_seed seed;                    /* random stream of this node; in a graph, its step counter lives in
                                              backend memory and advances after each training forward, so only a
                                              forward may draw (dropout) */
} kelp_layer_io;

typedef struct kelp_layer_type {
    const char *name;
    int min_inputs, max_inputs;
    const char *const *fields;   /* JSON fields besides name/type/inputs, NULL-terminated; others are errors */
    size_t attrs_size;

    /* Reads the node's JSON fields into attrs (zeroed before). Errors name the field; the graph adds the node. */
    kelp_status (*parse)(const cJSON *json, void *attrs);
    /* Output shape from input shapes; errors say which input and why. */
    kelp_status (*infer)(const void *attrs, const kelp_shape *in, int n_in, kelp_shape *out);
    /* Optional: fills up to KELP_MAX_PARAMS specs, returns their count. */
    int (*params)(const void *attrs, const kelp_shape *in, int n_in, kelp_param_spec *specs);
    /* Optional: bytes of shared scratch for forward/backward at these (planned-batch) shapes with activations
     * stored as `dtype`; fails when the backend has no way to run the layer at these shapes. */
    kelp_status (*workspace)(const void *attrs, kelp_backend *be, const kelp_shape *in, int n_in,
                             const kelp_shape *out, kelp_dtype dtype, size_t *bytes);
    /* Optional: bytes kept from forward to backward (argmax, masks, saved statistics, probabilities). */
    size_t (*state)(const void *attrs, const kelp_shape *in, int n_in, const kelp_shape *out);

    kelp_status (*forward)(const kelp_layer_io *io);
    kelp_status (*backward)(const kelp_layer_io *io);

    /* Optional, for the layers that are matrix products (conv2d, conv_transpose2d, linear): the floating-point
     * operations of one forward at these (run-time) shapes, 2 per multiply-add; bias and activations are not
     * counted. Their backward is at most two products of the same size, the input gradient and the weight
     * gradient, and the graph's profile counts the ones it runs. */
    int64_t (*flops)(const void *attrs, const kelp_shape *in, int n_in, const kelp_shape *out);

    bool is_loss;                /* takes (logits, labels) and produces a scalar */
} kelp_layer_type;

/* Parameter p as a matrix product reads it (in the activations' storage type) and where the product adds its
 * gradient (NULL when it has none). */
static inline const kelp_tensor *kelp_io_weight(const kelp_layer_io *io, int p)
{
    return io->param_lp[p] ? io->param_lp[p] : io->param[p];
}

static inline kelp_tensor *kelp_io_dweight(const kelp_layer_io *io, int p)
{
    if (!io->dparam[p])
        return NULL;
    return io->dparam_lp[p] ? io->dparam_lp[p] : io->dparam[p];
}

/* The shape a parameter has in memory: PyTorch's, except (O,H,W,I) for ohwi specs. */
kelp_shape kelp_param_internal_shape(const kelp_param_spec *spec);

const kelp_layer_type *kelp_layer_find(const char *name);
/* "conv2d, conv_transpose2d, ..." into buf. */
const char *kelp_layer_list(char *buf, size_t len);

#endif
