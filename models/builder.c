/* The model builder: JSON model files assembled node by node. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kelp/model_builder.h"

struct kelp_model_builder {
    cJSON *root, *inputs, *nodes, *outputs;
    kelp_status failed; /* the first failure sticks, so builder code can check once at the end */
};

static kelp_status oom(kelp_model_builder *b)
{
    b->failed = KELP_ERR_NO_MEMORY;
    return kelp_set_error(KELP_ERR_NO_MEMORY, "model builder: out of memory");
}

kelp_status kelp_builder_create(const char *name, const char *task, kelp_model_builder **out)
{
    kelp_model_builder *b = calloc(1, sizeof *b);
    if (!b)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "model builder: out of memory");
    b->root = cJSON_CreateObject();
    cJSON_AddStringToObject(b->root, "format", "kelp-model");
    cJSON_AddNumberToObject(b->root, "version", 1);
    cJSON_AddStringToObject(b->root, "name", name);
    cJSON_AddStringToObject(b->root, "task", task);
    b->inputs = cJSON_AddArrayToObject(b->root, "inputs");
    b->nodes = cJSON_AddArrayToObject(b->root, "nodes");
    b->outputs = cJSON_AddArrayToObject(b->root, "outputs");
    if (!b->root || !b->inputs || !b->nodes || !b->outputs) {
        cJSON_Delete(b->root);
        free(b);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "model builder: out of memory");
    }
    *out = b;
    return KELP_OK;
}

void kelp_builder_destroy(kelp_model_builder *b)
{
    if (!b)
        return;
    cJSON_Delete(b->root);
    free(b);
}

static cJSON *float_array(const float *x, int n)
{
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)x[i]));
    return arr;
}

kelp_status kelp_builder_input(kelp_model_builder *b, const char *name, int height, int width, int channels,
                               const float *mean, const float *std)
{
    cJSON *in = cJSON_CreateObject();
    if (!in)
        return oom(b);
    cJSON_AddItemToArray(b->inputs, in);
    cJSON_AddStringToObject(in, "name", name);
    int dims[3] = {height, width, channels};
    cJSON_AddItemToObject(in, "shape", cJSON_CreateIntArray(dims, 3));
    if (mean)
        cJSON_AddItemToObject(in, "mean", float_array(mean, channels));
    if (std)
        cJSON_AddItemToObject(in, "std", float_array(std, channels));
    return KELP_OK;
}

kelp_status kelp_builder_node(kelp_model_builder *b, const char *name, const char *type, const char *const *inputs,
                              const char *fields)
{
    cJSON *node = fields ? cJSON_Parse(fields) : cJSON_CreateObject();
    if (!node || !cJSON_IsObject(node)) {
        cJSON_Delete(node);
        b->failed = KELP_ERR_INVALID_ARG;
        return kelp_set_error(KELP_ERR_INVALID_ARG, "model builder: node '%s': fields are not a JSON object: %s",
                              name, fields);
    }
    /* name, type and inputs first: that is how people read a node */
    cJSON *head = cJSON_CreateObject();
    cJSON_AddStringToObject(head, "name", name);
    cJSON_AddStringToObject(head, "type", type);
    if (inputs) {
        cJSON *arr = cJSON_AddArrayToObject(head, "inputs");
        for (; *inputs; inputs++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(*inputs));
    }
    while (node->child) {
        cJSON *item = cJSON_DetachItemViaPointer(node, node->child);
        cJSON_AddItemToObject(head, item->string, item);
    }
    cJSON_Delete(node);
    cJSON_AddItemToArray(b->nodes, head);
    return KELP_OK;
}

kelp_status kelp_builder_output(kelp_model_builder *b, const char *name)
{
    cJSON_AddItemToArray(b->outputs, cJSON_CreateString(name));
    return KELP_OK;
}

kelp_status kelp_builder_loss(kelp_model_builder *b, const char *fields)
{
    cJSON *loss = cJSON_Parse(fields);
    if (!loss || !cJSON_IsObject(loss)) {
        cJSON_Delete(loss);
        b->failed = KELP_ERR_INVALID_ARG;
        return kelp_set_error(KELP_ERR_INVALID_ARG, "model builder: loss is not a JSON object: %s", fields);
    }
    cJSON_AddItemToObject(b->root, "loss", loss);
    return KELP_OK;
}

kelp_status kelp_builder_finish(kelp_model_builder *b, char **json_out)
{
    if (b->failed)
        return kelp_set_error(b->failed, "model builder: an earlier call failed");
    *json_out = cJSON_Print(b->root);
    return *json_out ? KELP_OK : oom(b);
}
