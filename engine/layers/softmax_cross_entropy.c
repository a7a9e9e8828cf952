/* Softmax cross-entropy loss with PyTorch's F.cross_entropy(reduction='mean') semantics: optional class weights,
 * label smoothing and ignore_index. Logits are (N,K) for classification or (N,H,W,K) for segmentation; the rows are
 * every sample or pixel. The output is the scalar mean loss. */
#include <limits.h>
#include <math.h>

#include "engine/json_attr.h"
#include "engine/layer.h"

/* Attrs have no destructor, so the class weights live inside them; 4096 covers ImageNet (1000) and LVIS (1203). */
#define XENT_MAX_CLASS_WEIGHTS 4096

typedef struct xent_attrs {
    float label_smoothing;
    int ignore_index;
    int n_weights; /* 0 without class weights */
    float weights[XENT_MAX_CLASS_WEIGHTS];
} xent_attrs;

static kelp_status parse_weights(const cJSON *json, xent_attrs *a)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, "weight");
    if (!item)
        return KELP_OK;
    int count = cJSON_IsArray(item) ? cJSON_GetArraySize(item) : 0;
    if (count < 1)
        return kelp_set_error(KELP_ERR_FORMAT, "field 'weight' must be a non-empty array of class weights");
    if (count > XENT_MAX_CLASS_WEIGHTS)
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "field 'weight' has %d entries; at most %d classes are supported",
                              count, XENT_MAX_CLASS_WEIGHTS);
    int k = 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, item)
    {
        if (!cJSON_IsNumber(w) || !isfinite(w->valuedouble) || (float)w->valuedouble <= 0.0f)
            return kelp_set_error(KELP_ERR_FORMAT, "field 'weight': entry %d must be a positive finite number", k);
        a->weights[k++] = (float)w->valuedouble;
    }
    a->n_weights = count;
    return KELP_OK;
}

static kelp_status parse(const cJSON *json, void *attrs)
{
    xent_attrs *a = attrs;
    a->ignore_index = -100;
    KELP_TRY(kelp_json_float(json, "label_smoothing", 0.0, 1.0, &a->label_smoothing));
    KELP_TRY(kelp_json_int(json, "ignore_index", INT_MIN, INT_MAX, &a->ignore_index));
    return parse_weights(json, a);
}

/* labels have the logits' shape without the class dimension */
static kelp_shape label_shape(const kelp_shape *logits)
{
    kelp_shape s = *logits;
    s.ndim--;
    s.dims[s.ndim] = 0;
    return s;
}

static kelp_status infer(const void *attrs, const kelp_shape *in, int n_in, kelp_shape *out)
{
    const xent_attrs *a = attrs;
    char got[64], want[64], logits[64];
    if (n_in != 2)
        return kelp_set_error(KELP_ERR_SHAPE, "takes 2 inputs (logits, labels), got %d", n_in);
    if (in[0].ndim != 2 && in[0].ndim != 4)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 (logits) has shape %s; expected rank 2 (N,K) or 4 (N,H,W,K)",
                              kelp_shape_str(&in[0], got, sizeof got));
    int64_t classes = in[0].dims[in[0].ndim - 1];
    if (classes < 1 || classes > INT_MAX)
        return kelp_set_error(KELP_ERR_SHAPE, "input 0 (logits) has shape %s; the class count must be in [1, %d]",
                              kelp_shape_str(&in[0], got, sizeof got), INT_MAX);
    kelp_shape labels = label_shape(&in[0]);
    if (!kelp_shape_equal(&in[1], &labels))
        return kelp_set_error(KELP_ERR_SHAPE, "input 1 (labels) has shape %s; expected %s for logits %s",
                              kelp_shape_str(&in[1], got, sizeof got), kelp_shape_str(&labels, want, sizeof want),
                              kelp_shape_str(&in[0], logits, sizeof logits));
    if (a->n_weights && a->n_weights != classes)
        return kelp_set_error(KELP_ERR_SHAPE, "field 'weight' has %d entries but the logits have %lld classes",
                              a->n_weights, (long long)classes);
    *out = kelp_shape_make(1, (const int64_t[]){1});
    return KELP_OK;
}

/* state: norm (1) | class weights (K) | probs (M,K), in floats; the layout does not depend on the batch */
static size_t state_bytes(const void *attrs, const kelp_shape *in, int n_in, const kelp_shape *out)
{
    (void)attrs;
    (void)n_in;
    (void)out;
    int64_t classes = in[0].dims[in[0].ndim - 1];
    return (size_t)(1 + classes + kelp_shape_numel(&in[0])) * sizeof(float);
}

typedef struct xent_run {
    kelp_xent_desc desc;
    float *norm, *weights, *probs;
    const float *class_weights; /* weights, or NULL without class weights */
} xent_run;

static kelp_status prepare(const kelp_layer_io *io, xent_run *run)
{
    const xent_attrs *a = io->attrs;
    const kelp_tensor *logits = io->in[0], *labels = io->in[1];
    int classes = (int)logits->shape.dims[logits->shape.ndim - 1];
    int64_t rows = kelp_shape_numel(&logits->shape) / classes;
    if (labels->dtype != KELP_I32 || kelp_shape_numel(&labels->shape) != rows)
        return kelp_set_error(KELP_ERR_INVALID_ARG,
                              "softmax_cross_entropy: labels must be %lld I32 values, got %lld %s", (long long)rows,
                              (long long)kelp_shape_numel(&labels->shape), kelp_dtype_name(labels->dtype));
    run->desc = (kelp_xent_desc){
        .rows = rows, .classes = classes, .label_smoothing = a->label_smoothing, .ignore_index = a->ignore_index,
        .dtype = logits->dtype};
    run->norm = io->state;
    run->weights = run->norm + 1;
    run->probs = run->weights + classes;
    run->class_weights = a->n_weights ? run->weights : NULL;
    return KELP_OK;
}

// logits (M,K) or (N,H,W,K), labels (M) or (N,H,W) -> loss (1)
static kelp_status forward(const kelp_layer_io *io)
{
    kelp_backend *be = io->be;
    const xent_attrs *a = io->attrs;
    xent_run run;
    KELP_TRY(prepare(io, &run));
    /* attrs live on the host; the kernel reads the weights from backend memory */
    if (a->n_weights)
        KELP_TRY(be->iface->upload(be, run.weights, a->weights, (size_t)a->n_weights * sizeof(float)));
    return be->iface->softmax_xent_forward(be, &run.desc, io->in[0]->data, io->in[1]->data, run.class_weights,
                                           io->out->data, run.probs, run.norm);
}

static kelp_status backward(const kelp_layer_io *io)
{
    if (!io->din[0])
        return KELP_OK;
    xent_run run;
    KELP_TRY(prepare(io, &run));
    return io->be->iface->softmax_xent_backward(io->be, &run.desc, run.probs, io->in[1]->data, run.class_weights,
                                                run.norm, io->dout->data, io->din[0]->data);
}

static const char *const fields[] = {"label_smoothing", "ignore_index", "weight", NULL};

const kelp_layer_type kelp_layer_softmax_cross_entropy = {
    .name = "softmax_cross_entropy",
    .min_inputs = 2,
    .max_inputs = 2,
    .fields = fields,
    .attrs_size = sizeof(xent_attrs),
    .parse = parse,
    .infer = infer,
    .state = state_bytes,
    .forward = forward,
    .backward = backward,
    .is_loss = true,
};
