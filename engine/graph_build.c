/* Building a graph from a JSON model file (docs/model-format.md): parse, validate, infer shapes, lay out parameters,
 * plan memory. Every error names the node (or the top-level field) and the problem. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/graph_internal.h"
#include "engine/json_attr.h"
#include "io/text_file.h"
#include "kernels/ops/half.h"

/* Far above real CNNs (ResNet-152 has ~500 nodes) and low enough that building stays well under a second. */
#define MODEL_MAX_NODES 10000
#define MODEL_MAX_INPUTS 16

static const char *const top_level_fields[] = {"format", "version", "name", "task", "description", "inputs",
                                               "nodes", "outputs", "loss", "class_names", NULL};
static const char *const input_fields[] = {"name", "shape", "dtype", "mean", "std", NULL};

kelp_graph_options kelp_graph_defaults(void)
{
    kelp_graph_options o = {
        .batch = 1, .training = false, .with_loss = false, .input_grads = false, .precision = KELP_F32};
    return o;
}

static char *dup_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static int find_value(const kelp_graph *g, const char *name)
{
    for (int i = 0; i < g->n_values; i++)
        if (strcmp(g->values[i].name, name) == 0)
            return i;
    return -1;
}

static kelp_status add_value(kelp_graph *g, const char *name, const kelp_shape *shape, kelp_dtype dtype,
                             bool batched, int producer, int *index)
{
    if (find_value(g, name) >= 0)
        return kelp_set_error(KELP_ERR_FORMAT, "the name '%s' is used twice (names of inputs and nodes must be unique)",
                              name);
    kelp_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = dup_string(name);
    if (!v->name)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "model: out of memory");
    v->shape = *shape;
    v->dtype = dtype;
    v->batched = batched;
    v->producer = producer;
    v->last_consumer = -1;
    v->written_by = producer;
    *index = g->n_values++;
    return KELP_OK;
}

static kelp_status parse_inputs(kelp_graph *g, const cJSON *inputs)
{
    if (!cJSON_IsArray(inputs) || cJSON_GetArraySize(inputs) < 1 || cJSON_GetArraySize(inputs) > MODEL_MAX_INPUTS)
        return kelp_set_error(KELP_ERR_FORMAT, "model: 'inputs' must be an array of 1 to %d input objects",
                              MODEL_MAX_INPUTS);
    g->n_inputs = cJSON_GetArraySize(inputs);
    g->input_values = calloc((size_t)g->n_inputs, sizeof *g->input_values);
    if (!g->input_values)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "model: out of memory");
    int i = 0;
    for (const cJSON *in = inputs->child; in; in = in->next, i++) {
        char where[64];
        snprintf(where, sizeof where, "model: input %d", i);
        if (!cJSON_IsObject(in))
            return kelp_set_error(KELP_ERR_FORMAT, "%s must be an object", where);
        KELP_TRY(kelp_json_check_fields(in, input_fields, NULL, where));
        const char *name = NULL;
        KELP_TRY(kelp_json_string(in, "name", &name));
        if (!name || !*name)
            return kelp_set_error(KELP_ERR_FORMAT, "%s needs a non-empty 'name'", where);
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(in, "shape");
        int rank = cJSON_GetArraySize(shape);
        if (!cJSON_IsArray(shape) || rank < 1 || rank > KELP_MAX_DIMS - 1)
            return kelp_set_error(KELP_ERR_FORMAT,
                                  "input '%s': 'shape' must be [H, W, C] or [features] (without the batch)", name);
        kelp_shape s = {.ndim = rank + 1};
        s.dims[0] = g->options.batch;
        int d = 1;
        for (const cJSON *dim = shape->child; dim; dim = dim->next, d++) {
            if (!cJSON_IsNumber(dim) || dim->valuedouble < 1 || dim->valuedouble > 1 << 20 ||
                dim->valuedouble != (double)(int64_t)dim->valuedouble)
                return kelp_set_error(KELP_ERR_FORMAT, "input '%s': shape entries must be integers in [1, 2^20]",
                                      name);
            s.dims[d] = (int64_t)dim->valuedouble;
        }
        const char *dtype_name = "F32";
        KELP_TRY(kelp_json_string(in, "dtype", &dtype_name));
        if (strcmp(dtype_name, "F32") != 0)
            return kelp_set_error(KELP_ERR_UNSUPPORTED, "input '%s': dtype '%s' is not supported (F32 only)", name,
                                  dtype_name);
        for (int k = 0; k < 2; k++) {
            const char *field = k ? "std" : "mean";
            const cJSON *arr = cJSON_GetObjectItemCaseSensitive(in, field);
            if (!arr)
                continue;
            if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != s.dims[s.ndim - 1])
                return kelp_set_error(KELP_ERR_FORMAT, "input '%s': '%s' must hold one number per channel (%lld)",
                                      name, field, (long long)s.dims[s.ndim - 1]);
            for (const cJSON *x = arr->child; x; x = x->next)
                if (!cJSON_IsNumber(x) || (k == 1 && x->valuedouble <= 0))
                    return kelp_set_error(KELP_ERR_FORMAT, "input '%s': '%s' entries must be numbers%s", name, field,
                                          k ? " > 0" : "");
        }
        size_t bytes;
        if (kelp_shape_bytes(&s, KELP_F32, &bytes) != KELP_OK)
            return kelp_wrap_error(KELP_ERR_SHAPE, "input '%s': ", name);
        KELP_TRY(add_value(g, name, &s, g->options.precision, true, -1, &g->input_values[i]));
    }
    return KELP_OK;
}

static kelp_status node_error(const kelp_node *node, int index, kelp_status s)
{
    if (node->name)
        return kelp_wrap_error(s, "node '%s' (%s): ", node->name, node->type ? node->type->name : "?");
    return kelp_wrap_error(s, "node %d: ", index);
}

static kelp_status parse_node_inputs(kelp_graph *g, kelp_node *node, const cJSON *json, int previous_value)
{
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(json, "inputs");
    if (!inputs) {
        /* Sequential models may omit "inputs": a node then reads the value defined just before it. */
        node->n_in = 1;
        node->in[0] = previous_value;
    } else {
        if (!cJSON_IsArray(inputs))
            return kelp_set_error(KELP_ERR_FORMAT, "'inputs' must be an array of names");
        int n = cJSON_GetArraySize(inputs);
        if (n > KELP_MAX_INPUTS)
            return kelp_set_error(KELP_ERR_FORMAT, "%d inputs, at most %d are supported", n, KELP_MAX_INPUTS);
        node->n_in = 0;
        for (const cJSON *in = inputs->child; in; in = in->next) {
            if (!cJSON_IsString(in))
                return kelp_set_error(KELP_ERR_FORMAT, "'inputs' must be an array of names");
            int v = find_value(g, in->valuestring);
            if (v < 0)
                return kelp_set_error(KELP_ERR_FORMAT,
                                      "input '%s' is neither a graph input nor a node defined before this one",
                                      in->valuestring);
            node->in[node->n_in++] = v;
        }
    }
    const kelp_layer_type *t = node->type;
    if (node->n_in < t->min_inputs || node->n_in > t->max_inputs) {
        if (t->min_inputs == t->max_inputs)
            return kelp_set_error(KELP_ERR_FORMAT, "%s takes %d input%s, got %d", t->name, t->min_inputs,
                                  t->min_inputs == 1 ? "" : "s", node->n_in);
        return kelp_set_error(KELP_ERR_FORMAT, "%s takes %d to %d inputs, got %d", t->name, t->min_inputs,
                              t->max_inputs, node->n_in);
    }
    return KELP_OK;
}

static const char *const node_common_fields[] = {"name", "type", "inputs", NULL};
/* The loss reads the first output and the labels: it names no inputs. */
static const char *const loss_common_fields[] = {"name", "type", NULL};

/* Parses one node, infers its output shape and registers its output value. */
static kelp_status build_node(kelp_graph *g, const cJSON *json, int index, int previous_value, bool loss)
{
    kelp_node *node = &g->nodes[index];
    if (!cJSON_IsObject(json))
        return kelp_set_error(KELP_ERR_FORMAT, "node %d: must be an object", index);
    const char *name = NULL, *type = NULL;
    if (kelp_json_string(json, "name", &name) != KELP_OK || kelp_json_string(json, "type", &type) != KELP_OK)
        return kelp_wrap_error(KELP_ERR_FORMAT, "node %d: ", index);
    if (loss && !name)
        name = "loss";
    if (!name || !*name)
        return kelp_set_error(KELP_ERR_FORMAT, "node %d: needs a non-empty 'name'", index);
    if (strncmp(name, KELP_RESERVED_PREFIX, strlen(KELP_RESERVED_PREFIX)) == 0)
        return kelp_set_error(KELP_ERR_FORMAT, "node '%s': names starting with '%s' are reserved", name,
                              KELP_RESERVED_PREFIX);
    node->name = dup_string(name);
    if (!node->name)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "model: out of memory");
    if (!type) {
        kelp_set_error(KELP_ERR_FORMAT, "missing field 'type'");
        return node_error(node, index, KELP_ERR_FORMAT);
    }
    node->type = kelp_layer_find(type);
    if (!node->type) {
        char known[1024];
        return kelp_set_error(KELP_ERR_FORMAT, "node '%s': unknown layer type '%s'; known types: %s", name, type,
                              kelp_layer_list(known, sizeof known));
    }
    if (node->type->is_loss != loss) {
        kelp_set_error(KELP_ERR_FORMAT, loss ? "'loss' must be a loss layer such as softmax_cross_entropy"
                                             : "a loss layer belongs in the model's 'loss' field, not in 'nodes'");
        return node_error(node, index, KELP_ERR_FORMAT);
    }
    kelp_status s = kelp_json_check_fields(json, node->type->fields, loss ? loss_common_fields : node_common_fields,
                                           NULL);
    if (s == KELP_OK) {
        node->attrs = calloc(1, node->type->attrs_size ? node->type->attrs_size : 1);
        s = node->attrs ? node->type->parse(json, node->attrs)
                        : kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory");
    }
    if (s == KELP_OK && !loss)
        s = parse_node_inputs(g, node, json, previous_value);
    if (s == KELP_OK && loss) {
        node->n_in = 2;
        node->in[0] = previous_value;
        node->in[1] = g->label_value;
    }
    if (s != KELP_OK)
        return node_error(node, index, s);

    kelp_shape in_shapes[KELP_MAX_INPUTS], out;
    for (int i = 0; i < node->n_in; i++) {
        kelp_value *v = &g->values[node->in[i]];
        if (v->dtype != g->options.precision && !(loss && i == 1)) {
            kelp_set_error(KELP_ERR_FORMAT, "input '%s' is not a float tensor", v->name);
            return node_error(node, index, KELP_ERR_FORMAT);
        }
        in_shapes[i] = v->shape;
        v->last_consumer = index;
    }
    s = node->type->infer(node->attrs, in_shapes, node->n_in, &out);
    size_t out_bytes;
    if (s == KELP_OK)
        s = kelp_shape_bytes(&out, KELP_F32, &out_bytes);
    if (s != KELP_OK)
        return node_error(node, index, s);
    for (int d = 0; d < out.ndim; d++)
        if (out.dims[d] < 1) {
            char buf[96];
            kelp_set_error(KELP_ERR_SHAPE, "output shape %s has an empty dimension", kelp_shape_str(&out, buf, 96));
            return node_error(node, index, KELP_ERR_SHAPE);
        }
    /* the loss is a float scalar whatever the precision */
    s = add_value(g, name, &out, loss ? KELP_F32 : g->options.precision, !loss, index, &node->out);
    if (s != KELP_OK)
        return node_error(node, index, s);
    if (node->type->state)
        node->state_bytes = node->type->state(node->attrs, in_shapes, node->n_in, &out);
    if (node->type->workspace) {
        size_t ws = 0;
        s = node->type->workspace(node->attrs, g->be, in_shapes, node->n_in, &out, g->options.precision, &ws);
        if (s != KELP_OK)
            return node_error(node, index, s);
        if (ws > g->workspace_bytes)
            g->workspace_bytes = ws;
    }
    return KELP_OK;
}

/* The loss reads the logits and a "label" input of int32 class indices, one per logits row. */
static kelp_status add_label_value(kelp_graph *g, int logits_value)
{
    kelp_shape s = g->values[logits_value].shape;
    s.ndim -= 1;
    if (s.ndim < 1)
        return kelp_set_error(KELP_ERR_SHAPE, "loss: logits '%s' must have a batch and a class dimension",
                              g->values[logits_value].name);
    return add_value(g, "label", &s, KELP_I32, true, -1, &g->label_value);
}

static kelp_status parse_outputs(kelp_graph *g, const cJSON *outputs)
{
    if (!outputs) {
        g->n_outputs = 1;
        g->output_values = calloc(1, sizeof *g->output_values);
        if (!g->output_values)
            return kelp_set_error(KELP_ERR_NO_MEMORY, "model: out of memory");
        g->output_values[0] = g->n_values - 1;
        return KELP_OK;
    }
    if (!cJSON_IsArray(outputs) || cJSON_GetArraySize(outputs) < 1)
        return kelp_set_error(KELP_ERR_FORMAT, "model: 'outputs' must be a non-empty array of node names");
    g->n_outputs = cJSON_GetArraySize(outputs);
    g->output_values = calloc((size_t)g->n_outputs, sizeof *g->output_values);
    if (!g->output_values)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "model: out of memory");
    int i = 0;
    for (const cJSON *o = outputs->child; o; o = o->next, i++) {
        int v = cJSON_IsString(o) ? find_value(g, o->valuestring) : -1;
        if (v < 0)
            return kelp_set_error(KELP_ERR_FORMAT, "model: output '%s' is not a node or input",
                                  cJSON_IsString(o) ? o->valuestring : "(not a string)");
        g->output_values[i] = v;
    }
    return KELP_OK;
}

static kelp_status add_params(kelp_graph *g)
{
    int total = 0;
    kelp_param_spec specs[KELP_MAX_PARAMS];
    for (int i = 0; i < g->n_nodes; i++) {
        kelp_node *node = &g->nodes[i];
        if (node->type->params) {
            kelp_shape in_shapes[KELP_MAX_INPUTS];
            for (int k = 0; k < node->n_in; k++)
                in_shapes[k] = g->values[node->in[k]].shape;
            node->n_params = node->type->params(node->attrs, in_shapes, node->n_in, specs);
            total += node->n_params;
        }
    }
    g->params = calloc((size_t)(total ? total : 1), sizeof *g->params);
    if (!g->params)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "model: out of memory");
    for (int i = 0; i < g->n_nodes; i++) {
        kelp_node *node = &g->nodes[i];
        if (!node->n_params)
            continue;
        kelp_shape in_shapes[KELP_MAX_INPUTS];
        for (int k = 0; k < node->n_in; k++)
            in_shapes[k] = g->values[node->in[k]].shape;
        node->type->params(node->attrs, in_shapes, node->n_in, specs);
        for (int p = 0; p < node->n_params; p++) {
            /* counted as soon as it owns a name, so that destroy frees it whatever fails below */
            node->param[p] = g->n_params;
            kelp_graph_param *gp = &g->params[g->n_params++];
            gp->spec = specs[p];
            gp->node = i;
            size_t len = strlen(node->name) + strlen(specs[p].suffix) + 2;
            gp->name = malloc(len);
            if (!gp->name)
                return kelp_set_error(KELP_ERR_NO_MEMORY, "model: out of memory");
            snprintf(gp->name, len, "%s.%s", node->name, specs[p].suffix);
            size_t bytes;
            if (kelp_shape_bytes(&specs[p].shape, specs[p].dtype, &bytes) != KELP_OK)
                return kelp_wrap_error(KELP_ERR_SHAPE, "parameter '%s': ", gp->name);
            if (g->params_bytes + g->buffers_bytes + bytes > KELP_TENSOR_MAX_BYTES)
                return kelp_set_error(KELP_ERR_SHAPE, "parameter '%s': the model's parameters pass the %zu-byte limit",
                                      gp->name, KELP_TENSOR_MAX_BYTES);
            if (specs[p].kind == KELP_PARAM_TRAINABLE) {
                gp->offset = g->params_bytes;
                g->params_bytes += bytes;
            } else {
                /* buffers mix f32 and i64: keep each 8-byte aligned */
                gp->offset = (g->buffers_bytes + 7) & ~(size_t)7;
                g->buffers_bytes = gp->offset + bytes;
            }
        }
    }
    return KELP_OK;
}

/* Mixed precision: the trainable parameters (and gradients) once more in the activations' storage type, each at
 * the element offset it has in the float buffer. */
static kelp_status alloc_params_lp(kelp_graph *g)
{
    kelp_dtype dt = g->options.precision;
    if (dt == KELP_F32)
        return KELP_OK;
    kelp_backend *be = g->be;
    size_t count = g->params_bytes / sizeof(float), bytes = count * kelp_dtype_size(dt);
    KELP_TRY(be->iface->alloc(be, bytes, &g->params_lp_mem));
    if (g->grads_mem) {
        KELP_TRY(be->iface->alloc(be, bytes, &g->grads_lp_mem));
        KELP_TRY(be->iface->memset(be, g->grads_lp_mem, 0, bytes));
    }
    for (int i = 0; i < g->n_params; i++) {
        kelp_graph_param *p = &g->params[i];
        if (p->spec.kind != KELP_PARAM_TRAINABLE)
            continue;
        size_t offset = p->offset / sizeof(float) * kelp_dtype_size(dt);
        p->value_lp = (kelp_tensor){p->value.shape, dt, (char *)g->params_lp_mem + offset, be};
        if (g->grads_lp_mem)
            p->grad_lp = (kelp_tensor){p->value.shape, dt, (char *)g->grads_lp_mem + offset, be};
    }
    return KELP_OK;
}

static kelp_status alloc_params(kelp_graph *g)
{
    kelp_backend *be = g->be;
    KELP_TRY(be->iface->alloc(be, g->params_bytes, &g->params_mem));
    KELP_TRY(be->iface->alloc(be, g->buffers_bytes, &g->buffers_mem));
    if (g->options.training) {
        KELP_TRY(be->iface->alloc(be, g->params_bytes, &g->grads_mem));
        KELP_TRY(be->iface->memset(be, g->grads_mem, 0, g->params_bytes));
    }
    for (int i = 0; i < g->n_params; i++) {
        kelp_graph_param *p = &g->params[i];
        bool trainable = p->spec.kind == KELP_PARAM_TRAINABLE;
        char *base = trainable ? g->params_mem : g->buffers_mem;
        p->value = (kelp_tensor){kelp_param_internal_shape(&p->spec), p->spec.dtype, base + p->offset, be};
        if (trainable && g->grads_mem)
            p->grad = (kelp_tensor){p->value.shape, KELP_F32, (char *)g->grads_mem + p->offset, be};
    }
    kelp_shape flat = kelp_shape_make(1, (int64_t[]){(int64_t)(g->params_bytes / sizeof(float))});
    g->params_tensor = (kelp_tensor){flat, KELP_F32, g->params_mem, be};
    g->grads_tensor = (kelp_tensor){flat, KELP_F32, g->grads_mem, be};
    KELP_TRY(alloc_params_lp(g));
    return kelp_graph_init_params(g);
}

static kelp_status build(kelp_graph *g, cJSON *model)
{
    if (!cJSON_IsObject(model))
        return kelp_set_error(KELP_ERR_FORMAT, "model: the file must hold a JSON object");
    KELP_TRY(kelp_json_check_fields(model, top_level_fields, NULL, "model"));
    const char *format = NULL;
    KELP_TRY(kelp_json_string(model, "format", &format));
    if (!format || strcmp(format, "kelp-model") != 0)
        return kelp_set_error(KELP_ERR_FORMAT, "model: 'format' must be \"kelp-model\"");
    int version = 0;
    KELP_TRY(kelp_json_int(model, "version", 0, 1000, &version));
    if (version != 1)
        return kelp_set_error(KELP_ERR_FORMAT, "model: 'version' %d is not supported (this kelp reads version 1)",
                              version);
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(model, "nodes");
    if (!cJSON_IsArray(nodes) || cJSON_GetArraySize(nodes) < 1)
        return kelp_set_error(KELP_ERR_FORMAT, "model: 'nodes' must be a non-empty array of node objects");
    if (cJSON_GetArraySize(nodes) > MODEL_MAX_NODES)
        return kelp_set_error(KELP_ERR_FORMAT, "model: %d nodes, more than the %d a model may have",
                              cJSON_GetArraySize(nodes), MODEL_MAX_NODES);
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(model, "loss");
    if (g->options.with_loss && !cJSON_IsObject(loss))
        return kelp_set_error(KELP_ERR_FORMAT, "model: training needs a 'loss' object (e.g. "
                                               "{\"type\": \"softmax_cross_entropy\"})");
    int n_nodes = cJSON_GetArraySize(nodes) + (g->options.with_loss ? 1 : 0);
    int n_inputs = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(model, "inputs"));
    g->nodes = calloc((size_t)n_nodes, sizeof *g->nodes);
    g->values = calloc((size_t)(n_nodes + n_inputs + 2), sizeof *g->values);
    if (!g->nodes || !g->values)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "model: out of memory");

    KELP_TRY(parse_inputs(g, cJSON_GetObjectItemCaseSensitive(model, "inputs")));
    int previous = g->input_values[0];
    for (const cJSON *n = nodes->child; n; n = n->next) {
        int index = g->n_nodes++;
        KELP_TRY(build_node(g, n, index, previous, false));
        previous = g->nodes[index].out;
    }
    KELP_TRY(parse_outputs(g, cJSON_GetObjectItemCaseSensitive(model, "outputs")));
    if (g->options.with_loss) {
        KELP_TRY(add_label_value(g, g->output_values[0]));
        int index = g->n_nodes++;
        KELP_TRY(build_node(g, loss, index, g->output_values[0], true));
        g->loss_node = index;
    }
    KELP_TRY(add_params(g));
    KELP_TRY(alloc_params(g));
    kelp_graph_update_requires_grad(g);
    KELP_TRY(kelp_graph_plan_fusion(g));
    KELP_TRY(kelp_graph_plan_memory(g));
    return kelp_graph_set_batch(g, g->options.batch);
}

kelp_status kelp_graph_build(kelp_ctx *ctx, const char *model_json, const kelp_graph_options *options,
                             kelp_graph **out)
{
    *out = NULL;
    kelp_graph_options o = options ? *options : kelp_graph_defaults();
    if (o.batch < 1 || o.batch > 1 << 20)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "graph: batch %d is outside [1, 2^20]", o.batch);
    if ((o.with_loss || o.input_grads) && !o.training)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "graph: a loss or input gradients need training = true");
    if (!kelp_dtype_is_float(o.precision))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "graph: precision %s is not one of F32, BF16, F16",
                              kelp_dtype_name(o.precision));
    kelp_backend *be = kelp_ctx_backend(ctx);
    if (o.precision != KELP_F32 && !be->iface->supports(be, KELP_OP_CONVERT, o.precision))
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "graph: the %s backend has no %s storage", be->iface->name,
                              kelp_dtype_name(o.precision));
    /* cJSON reports where parsing stopped through `end` (its global error pointer is shared between threads) */
    const char *end = NULL;
    cJSON *model = cJSON_ParseWithOpts(model_json, &end, 1);
    if (!model)
        return kelp_set_error(KELP_ERR_FORMAT, "model: invalid JSON near byte %ld: \"%.32s\"",
                              end ? (long)(end - model_json) : -1L, end ? end : "");
    kelp_graph *g = calloc(1, sizeof *g);
    if (!g) {
        cJSON_Delete(model);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "graph: out of memory");
    }
    g->ctx = ctx;
    g->be = kelp_ctx_backend(ctx);
    g->options = o;
    g->model = model;
    g->label_value = -1;
    g->loss_node = -1;
    g->loss_scale = 1.0f;
    g->training = o.training;
    kelp_status s = build(g, model);
    if (s != KELP_OK) {
        kelp_graph_destroy(g);
        return s;
    }
    *out = g;
    return KELP_OK;
}

kelp_status kelp_graph_build_file(kelp_ctx *ctx, const char *path, const kelp_graph_options *options,
                                  kelp_graph **out)
{
    char *text;
    KELP_TRY(kelp_read_text_file(path, KELP_MODEL_FILE_MAX_BYTES, &text));
    kelp_status s = kelp_graph_build(ctx, text, options, out);
    if (s != KELP_OK)
        kelp_wrap_error(s, "%s: ", path);
    free(text);
    return s;
}

void kelp_graph_destroy(kelp_graph *g)
{
    if (!g)
        return;
    kelp_backend *be = g->be;
    for (int i = 0; i < g->n_values; i++)
        free(g->values[i].name);
    /* n_nodes counts a node that failed mid-build too: it may own a name and attrs */
    for (int i = 0; i < g->n_nodes; i++) {
        free(g->nodes[i].name);
        free(g->nodes[i].attrs);
    }
    for (int i = 0; i < g->n_params; i++)
        free(g->params[i].name);
    if (g->params_mem)
        be->iface->free(be, g->params_mem);
    if (g->grads_mem)
        be->iface->free(be, g->grads_mem);
    if (g->params_lp_mem)
        be->iface->free(be, g->params_lp_mem);
    if (g->grads_lp_mem)
        be->iface->free(be, g->grads_lp_mem);
    if (g->buffers_mem)
        be->iface->free(be, g->buffers_mem);
    if (g->arena)
        be->iface->free(be, g->arena);
    if (g->loss_seed)
        be->iface->free(be, g->loss_seed);
    if (g->step_counter)
        be->iface->free(be, g->step_counter);
    if (g->workspace)
        be->iface->free(be, g->workspace);
    free(g->values);
    free(g->nodes);
    free(g->params);
    free(g->input_values);
    free(g->output_values);
    free(g->profile);
    if (g->fold)
        be->iface->free(be, g->fold);
    kelp_graph_replay_drop(g);
    cJSON_Delete(g->model);
    free(g);
}
