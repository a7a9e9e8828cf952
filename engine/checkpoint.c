#include "engine/checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/graph_internal.h"
#include "io/path.h"
#include "io/safetensors.h"

#define OPTIMIZER_PREFIX KELP_RESERVED_PREFIX "optimizer."
#define MAX_OPTIMIZER_STATES 4

static char *state_json(const kelp_train_state *st)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "epoch", (double)st->epoch);
    cJSON_AddNumberToObject(o, "next_batch", (double)st->next_batch);
    cJSON_AddNumberToObject(o, "optimizer_steps", (double)st->optimizer_steps);
    cJSON_AddNumberToObject(o, "graph_step", (double)st->graph_step);
    cJSON_AddNumberToObject(o, "best_metric", st->best_metric);
    cJSON_AddNumberToObject(o, "best_epoch", (double)st->best_epoch);
    if (st->scaler.scale > 0) { /* a zeroed state has no scaler: loading it starts a fresh one */
        cJSON_AddNumberToObject(o, "loss_scale", st->scaler.scale);
        cJSON_AddNumberToObject(o, "loss_scale_clean_steps", (double)st->scaler.clean_steps);
        cJSON_AddNumberToObject(o, "skipped_steps", (double)st->scaler.skipped_steps);
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* An integer field in [-1, 2^53] (doubles hold those exactly; -1 means "none yet"). */
static kelp_status state_int(const cJSON *o, const char *field, const char *path, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    if (!cJSON_IsNumber(v) || v->valuedouble < -1 || v->valuedouble > 9007199254740992.0 ||
        v->valuedouble != floor(v->valuedouble))
        return kelp_set_error(KELP_ERR_FORMAT, "%s: checkpoint state field '%s' is missing or not a count", path,
                              field);
    *out = (int64_t)v->valuedouble;
    return KELP_OK;
}

static kelp_status parse_state(const char *text, const char *path, kelp_train_state *st)
{
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return kelp_set_error(KELP_ERR_FORMAT, "%s: not a kelp checkpoint (no valid kelp.state metadata)", path);
    }
    int64_t graph_step = 0;
    kelp_status s = state_int(o, "epoch", path, &st->epoch);
    if (s == KELP_OK)
        s = state_int(o, "next_batch", path, &st->next_batch);
    if (s == KELP_OK)
        s = state_int(o, "optimizer_steps", path, &st->optimizer_steps);
    if (s == KELP_OK)
        s = state_int(o, "graph_step", path, &graph_step);
    if (s == KELP_OK)
        s = state_int(o, "best_epoch", path, &st->best_epoch);
    const cJSON *best = cJSON_GetObjectItemCaseSensitive(o, "best_metric");
    if (s == KELP_OK && !cJSON_IsNumber(best))
        s = kelp_set_error(KELP_ERR_FORMAT, "%s: checkpoint state field 'best_metric' is missing", path);
    if (s == KELP_OK) {
        st->best_metric = best->valuedouble;
        st->graph_step = (uint64_t)graph_step;
    }
    /* the loss scaler's state; checkpoints written before it existed start a fresh one */
    kelp_loss_scaler_init(&st->scaler);
    const cJSON *scale = cJSON_GetObjectItemCaseSensitive(o, "loss_scale");
    if (s == KELP_OK && scale) {
        if (!cJSON_IsNumber(scale) || !(scale->valuedouble > 0) || !isfinite(scale->valuedouble))
            s = kelp_set_error(KELP_ERR_FORMAT, "%s: checkpoint state field 'loss_scale' is not a positive number",
                               path);
        if (s == KELP_OK)
            s = state_int(o, "loss_scale_clean_steps", path, &st->scaler.clean_steps);
        if (s == KELP_OK)
            s = state_int(o, "skipped_steps", path, &st->scaler.skipped_steps);
        if (s == KELP_OK)
            st->scaler.scale = (float)scale->valuedouble;
    }
    cJSON_Delete(o);
    return s;
}

kelp_status kelp_checkpoint_save(const char *path, kelp_graph *g, kelp_optimizer *opt, const kelp_train_state *state,
                                 const char *config_json)
{
    int n_states = opt ? kelp_optimizer_state_count(opt) : 0;
    if (n_states > MAX_OPTIMIZER_STATES)
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "%s: optimizer has %d state tensors", path, n_states);
    kelp_st_record records[MAX_OPTIMIZER_STATES];
    char names[MAX_OPTIMIZER_STATES][64];
    void *host[MAX_OPTIMIZER_STATES] = {0};
    kelp_status s = KELP_OK;
    for (int i = 0; i < n_states && s == KELP_OK; i++) {
        const char *name;
        kelp_tensor t;
        s = kelp_optimizer_state(opt, i, &name, &t);
        if (s != KELP_OK)
            break;
        size_t bytes = kelp_tensor_bytes(&t);
        host[i] = malloc(bytes ? bytes : 1);
        if (!host[i]) {
            s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
            break;
        }
        s = kelp_tensor_download(&t, host[i], bytes);
        snprintf(names[i], sizeof names[i], OPTIMIZER_PREFIX "%s", name);
        records[i] = (kelp_st_record){names[i], KELP_ST_F32, t.shape, host[i]};
    }
    char *model = cJSON_PrintUnformatted(kelp_graph_model(g));
    char *st = state_json(state);
    if (s == KELP_OK && (!model || !st))
        s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
    if (s == KELP_OK) {
        const kelp_st_meta meta[] = {{"format", "pt"},
                                     {"producer", "kelp " KELP_VERSION_STRING},
                                     {"kelp.model", model},
                                     {"kelp.state", st},
                                     {"kelp.config", config_json ? config_json : "{}"}};
        s = kelp_graph_write_safetensors(g, path, records, (size_t)n_states, meta, sizeof meta / sizeof meta[0]);
    }
    for (int i = 0; i < n_states; i++)
        free(host[i]);
    free(model);
    free(st);
    return s;
}

static char *dup_text(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

kelp_status kelp_checkpoint_model(const char *path, char **model_json, char **config_json)
{
    kelp_st_file *f;
    KELP_TRY(kelp_st_open(path, &f));
    const char *model = kelp_st_metadata_get(f, "kelp.model"), *config = kelp_st_metadata_get(f, "kelp.config");
    kelp_status s = KELP_OK;
    *model_json = NULL;
    if (!model)
        s = kelp_set_error(KELP_ERR_FORMAT, "%s: not a kelp checkpoint (no kelp.model metadata)", path);
    else if (!(*model_json = dup_text(model)))
        s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
    if (s == KELP_OK && config_json && !(*config_json = dup_text(config ? config : "{}"))) {
        free(*model_json);
        *model_json = NULL;
        s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    kelp_st_close(f);
    return s;
}

/* Checks every optimizer state tensor of the file against the optimizer before anything is loaded. */
static kelp_status find_optimizer_states(kelp_st_file *f, const char *path, kelp_optimizer *opt,
                                         const kelp_st_info **infos)
{
    for (int i = 0; i < kelp_optimizer_state_count(opt); i++) {
        const char *name;
        kelp_tensor t;
        KELP_TRY(kelp_optimizer_state(opt, i, &name, &t));
        char full[96];
        snprintf(full, sizeof full, OPTIMIZER_PREFIX "%s", name);
        if (kelp_st_find(f, full, &infos[i]) != KELP_OK)
            return kelp_set_error(KELP_ERR_FORMAT,
                                  "%s: the checkpoint has no '%s': it was saved with another optimizer", path, full);
        if (infos[i]->dtype != KELP_ST_F32 || infos[i]->nbytes != kelp_tensor_bytes(&t))
            return kelp_set_error(KELP_ERR_SHAPE, "%s: '%s' does not fit this model's %lld parameters", path, full,
                                  (long long)kelp_shape_numel(&t.shape));
    }
    return KELP_OK;
}

kelp_status kelp_checkpoint_load(const char *path, kelp_graph *g, kelp_optimizer *opt, kelp_train_state *state,
                                 char **config_json)
{
    kelp_st_file *f;
    KELP_TRY(kelp_st_open(path, &f));
    kelp_train_state st = {0};
    const kelp_st_info *infos[MAX_OPTIMIZER_STATES] = {0};
    kelp_status s = parse_state(kelp_st_metadata_get(f, "kelp.state"), path, &st);
    if (s == KELP_OK && opt && kelp_optimizer_state_count(opt) > MAX_OPTIMIZER_STATES)
        s = kelp_set_error(KELP_ERR_UNSUPPORTED, "%s: optimizer has too many state tensors", path);
    if (s == KELP_OK && opt)
        s = find_optimizer_states(f, path, opt, infos);
    const char *config = kelp_st_metadata_get(f, "kelp.config");
    char *config_copy = NULL;
    if (s == KELP_OK && config_json && !(config_copy = dup_text(config ? config : "{}")))
        s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
    if (s == KELP_OK)
        s = kelp_graph_load_weights(g, path, KELP_LOAD_STRICT);
    for (int i = 0; opt && s == KELP_OK && i < kelp_optimizer_state_count(opt); i++) {
        const char *name;
        kelp_tensor t;
        s = kelp_optimizer_state(opt, i, &name, &t);
        void *host = s == KELP_OK ? malloc((size_t)infos[i]->nbytes + 1) : NULL;
        if (s == KELP_OK && !host)
            s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
        if (s == KELP_OK)
            s = kelp_st_read(f, infos[i], host, (size_t)infos[i]->nbytes);
        if (s == KELP_OK)
            s = kelp_tensor_upload(&t, host, (size_t)infos[i]->nbytes);
        free(host);
    }
    if (s == KELP_OK && opt)
        s = kelp_optimizer_set_step_count(opt, st.optimizer_steps);
    if (s == KELP_OK)
        s = kelp_graph_set_step(g, st.graph_step);
    if (s == KELP_OK) {
        if (state)
            *state = st;
        if (config_json)
            *config_json = config_copy;
    } else {
        free(config_copy);
    }
    kelp_st_close(f);
    return s;
}

kelp_status kelp_checkpoint_resolve(const char *path, char **weights)
{
    *weights = NULL;
    if (!path || !*path)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "no checkpoint or bundle given");
    struct stat st;
    if (stat(path, &st) != 0)
        return kelp_set_error(KELP_ERR_IO, "%s: %s", path, strerror(errno));
    const size_t n = strlen(path) + sizeof "/model/weights.safetensors";
    if (!(*weights = malloc(n)))
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
    if (!S_ISDIR(st.st_mode)) {
        memcpy(*weights, path, strlen(path) + 1);
        return KELP_OK;
    }
    if (kelp_path_join(*weights, n, path, "model/weights.safetensors") != KELP_OK || stat(*weights, &st) != 0) {
        free(*weights);
        *weights = NULL;
        return kelp_set_error(KELP_ERR_NOT_FOUND, "%s: a directory but not a kelp bundle (no model/weights.safetensors)",
                              path);
    }
    return KELP_OK;
}

kelp_status kelp_checkpoint_strip(kelp_ctx *ctx, const char *in, const char *out)
{
    char *model = NULL, *config = NULL;
    KELP_TRY(kelp_checkpoint_model(in, &model, &config));
    kelp_graph_options o = kelp_graph_defaults();
    o.batch = 1;
    kelp_graph *g = NULL;
    kelp_status s = kelp_graph_build(ctx, model, &o, &g);
    if (s == KELP_OK)
        s = kelp_graph_load_weights(g, in, KELP_LOAD_STRICT);
    kelp_train_state state = {.best_metric = -1, .best_epoch = -1};
    if (s == KELP_OK)
        s = kelp_checkpoint_save(out, g, NULL, &state, config);
    kelp_graph_destroy(g);
    free(model);
    free(config);
    return s;
}
