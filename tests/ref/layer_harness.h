/* Runs one layer type through its vtable on the CPU backend, outside any graph: parse, infer, params, forward,
 * backward, and a finite-difference check of every input and trainable parameter gradient.
 *
 * The scalar behind the gradient check is L = sum(out * r) with a fixed random r, evaluated in double, so
 * dL/dout = r is what backward receives. For loss layers (is_loss), input 1 holds int32 labels and L = out. */
#ifndef KELP_LAYER_HARNESS_H
#define KELP_LAYER_HARNESS_H

#include <stdbool.h>

#include "engine/layer.h"
#include "test_util.h"

typedef struct test_layer {
    kelp_backend *be;
    const kelp_layer_type *type;
    cJSON *json;
    void *attrs;
    int n_in;
    kelp_shape in_shape[KELP_MAX_INPUTS];
    kelp_shape out_shape;
    kelp_tensor in[KELP_MAX_INPUTS], din[KELP_MAX_INPUTS];
    kelp_tensor out, dout;
    int n_params;
    kelp_param_spec spec[KELP_MAX_PARAMS];
    kelp_tensor param[KELP_MAX_PARAMS], dparam[KELP_MAX_PARAMS];
    void *state, *workspace;
    size_t state_bytes, workspace_bytes;
    kelp_layer_io io;
} test_layer;

/* Builds the layer `type` with JSON fields `fields_json` (an object text such as "{\"out_channels\":4}") for inputs
 * of the given shapes. Inputs are filled U(-1,1), parameters U(-0.5,0.5) (running variances U(0.5,1.5)),
 * labels uniformly in [0, classes). Fails the test on any error. */
void test_layer_setup(test_layer *t, const char *type, const char *fields_json, int n_in, const kelp_shape *in_shapes,
                      bool training, uint64_t seed);
/* Like setup but returns the status of parse/infer instead of failing (for tests of invalid attributes). */
kelp_status test_layer_try_setup(test_layer *t, const char *type, const char *fields_json, int n_in,
                                 const kelp_shape *in_shapes, bool training, uint64_t seed);
void test_layer_forward(test_layer *t);
/* Zeroes din and dparam, sets dout = r, runs backward. */
void test_layer_backward(test_layer *t);
/* Central differences with step `eps` on up to `samples` elements of every float input and trainable parameter;
 * passes when |analytic - numeric| <= tol * max(1, |analytic|, |numeric|). */
void test_layer_gradcheck(test_layer *t, float eps, double tol, int samples);
/* Backward accumulates: a second call without zeroing doubles every input and parameter gradient. */
void test_layer_check_accumulates(test_layer *t);
void test_layer_teardown(test_layer *t);

/* Host views (the CPU backend's memory is host memory). */
static inline float *test_f32(const kelp_tensor *x) { return (float *)x->data; }

#endif
