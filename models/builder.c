/* The model builder: JSON model files assembled node by node. */
#include <stdbool.h>
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

/* Adds `item` to `parent` (an object when key is set, else an array); a NULL item means cJSON ran out of memory.
 * Ownership passes to the parent, or the item is freed. */
static bool attach(cJSON *parent, const char *key, cJSON *item)
{
    if (!item)
        return false;
    if (key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item))
        return true;
    cJSON_Delete(item);
    return false;
}

kelp_status kelp_builder_input(kelp_model_builder *b, const char *name, int height, int width, int channels,
                               const double *mean, const double *std)
{
    cJSON *in = cJSON_CreateObject();
    if (!attach(b->inputs, NULL, in))
        return oom(b);
    int dims[3] = {height, width, channels};
    bool ok = attach(in, "name", cJSON_CreateString(name)) && attach(in, "shape", cJSON_CreateIntArray(dims, 3)) &&
              (!mean || attach(in, "mean", cJSON_CreateDoubleArray(mean, channels))) &&
              (!std || attach(in, "std", cJSON_CreateDoubleArray(std, channels)));
    return ok ? KELP_OK : oom(b);
}

static bool reserved(const char *field)
{
    return strcmp(field, "name") == 0 || strcmp(field, "type") == 0 || strcmp(field, "inputs") == 0;
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
    for (const cJSON *f = node->child; f; f = f->next)
        if (reserved(f->string)) {
            cJSON_Delete(node);
            b->failed = KELP_ERR_INVALID_ARG;
            return kelp_set_error(KELP_ERR_INVALID_ARG, "model builder: node '%s': '%s' is an argument, not a field",
                                  name, f->string);
        }
    /* name, type and inputs first: that is how people read a node */
    cJSON *head = cJSON_CreateObject();
    bool ok = attach(b->nodes, NULL, head) && attach(head, "name", cJSON_CreateString(name)) &&
              attach(head, "type", cJSON_CreateString(type));
    if (ok && inputs) {
        cJSON *arr = cJSON_CreateArray();
        ok = attach(head, "inputs", arr);
        for (; ok && *inputs; inputs++)
            ok = attach(arr, NULL, cJSON_CreateString(*inputs));
    }
    while (ok && node->child) {
        cJSON *item = cJSON_DetachItemViaPointer(node, node->child);
        ok = attach(head, item->string, item);
    }
    cJSON_Delete(node);
    return ok ? KELP_OK : oom(b);
}

kelp_status kelp_builder_output(kelp_model_builder *b, const char *name)
{
    return attach(b->outputs, NULL, cJSON_CreateString(name)) ? KELP_OK : oom(b);
}

kelp_status kelp_builder_loss(kelp_model_builder *b, const char *fields)
{
    cJSON *loss = cJSON_Parse(fields);
    if (!loss || !cJSON_IsObject(loss)) {
        cJSON_Delete(loss);
        b->failed = KELP_ERR_INVALID_ARG;
        return kelp_set_error(KELP_ERR_INVALID_ARG, "model builder: loss is not a JSON object: %s", fields);
    }
    return attach(b->root, "loss", loss) ? KELP_OK : oom(b);
}

kelp_status kelp_builder_finish(kelp_model_builder *b, char **json_out)
{
    if (b->failed)
        return kelp_set_error(b->failed, "model builder: an earlier call failed");
    *json_out = cJSON_Print(b->root);
    return *json_out ? KELP_OK : oom(b);
}
