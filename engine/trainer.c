/* The training loop behind `kelp train`. */
#include "engine/trainer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/checkpoint.h"
#include "engine/feed.h"
#include "engine/graph_internal.h"
#include "engine/lr_schedule.h"
#include "engine/optimizer.h"
#include "engine/train_step.h"
#include "io/dataset.h"
#include "io/loader.h"
#include "io/text_file.h"

void kelp_train_options_defaults(kelp_train_options *o)
{
    memset(o, 0, sizeof *o);
    o->epochs = 10;
    o->batch = 64;
    o->optimizer = "sgd";
    o->lr = 0.1;
    o->momentum = 0.9;
    o->weight_decay = 5e-4;
    o->schedule = "cosine";
    o->precision = "fp32";
    o->loader_threads = 1;
    o->seed = 1;
    o->hflip = true;
    o->log_every = 50;
}

/* Everything a run holds, so that one cleanup path frees it whatever failed. */
typedef struct run {
    kelp_train_options o;
    kelp_train_callback callback;
    void *user;
    char checkpoint_last[1024], checkpoint_best[1024];
    cJSON *config;              /* the options as stored in checkpoints */
    kelp_ctx *ctx;
    kelp_dataset *data;
    kelp_graph *g;
    kelp_optimizer *opt;
    kelp_train_step *step;      /* forward, backward and the update, one unit */
    kelp_loader *train, *val;
    kelp_lr_schedule schedule;
    kelp_param_segment *segments;
    int n_segments;
    kelp_train_state state;
    FILE *metrics;
    int classes;
    float *logits;              /* host copy of a batch of logits */
} run;

static void say(run *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void say(run *r, const char *fmt, ...)
{
    if (!r->callback)
        return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    kelp_train_event e = {.kind = KELP_TRAIN_MESSAGE, .message = text};
    r->callback(r->user, &e);
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- options <-> JSON (stored in checkpoints so that --resume needs no flags) ---- */

static cJSON *options_json(const kelp_train_options *o)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "data", o->data);
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON_AddNumberToObject(j, "input_h", o->input_h);
    cJSON_AddNumberToObject(j, "input_w", o->input_w);
    cJSON_AddNumberToObject(j, "epochs", o->epochs);
    cJSON_AddNumberToObject(j, "batch", o->batch);
    cJSON_AddStringToObject(j, "optimizer", o->optimizer);
    cJSON_AddNumberToObject(j, "lr", o->lr);
    cJSON_AddNumberToObject(j, "momentum", o->momentum);
    cJSON_AddNumberToObject(j, "weight_decay", o->weight_decay);
    cJSON_AddStringToObject(j, "schedule", o->schedule);
    cJSON_AddNumberToObject(j, "clip_norm", o->clip_norm);
    cJSON_AddBoolToObject(j, "loss_scale", o->loss_scale);
    cJSON_AddStringToObject(j, "precision", o->precision);
    cJSON_AddNumberToObject(j, "label_smoothing", o->label_smoothing);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    cJSON_AddBoolToObject(j, "hflip", o->hflip);
    cJSON_AddBoolToObject(j, "vflip", o->vflip);
    cJSON_AddBoolToObject(j, "rot90", o->rot90);
    cJSON_AddBoolToObject(j, "random_resized_crop", o->random_resized_crop);
    cJSON_AddNumberToObject(j, "pad_crop", o->pad_crop);
    cJSON_AddNumberToObject(j, "jitter", o->jitter);
    cJSON_AddBoolToObject(j, "letterbox", o->letterbox);
    cJSON_AddBoolToObject(j, "freeze_backbone", o->freeze_backbone);
    cJSON_AddNumberToObject(j, "log_every", o->log_every);
    return j;
}

static const char *json_str(const cJSON *j, const char *key, const char *fallback)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : fallback;
}

static double json_num(const cJSON *j, const char *key, double fallback)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : fallback;
}

/* An integer field; a number outside int's range (a damaged file) becomes INT_MIN, which every range check refuses,
 * instead of an undefined conversion. */
static int json_int(const cJSON *j, const char *key, int fallback)
{
    double v = json_num(j, key, fallback);
    return v >= INT_MIN && v <= INT_MAX ? (int)v : INT_MIN;
}

static bool json_bool(const cJSON *j, const char *key, bool fallback)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : fallback;
}

/* A resumed run takes its options from the checkpoint (strings point into `j`, which outlives the run); only
 * where the run goes and how it uses the machine come from the caller. */
static void options_from_json(const cJSON *j, const kelp_train_options *caller, kelp_train_options *o)
{
    *o = *caller;
    o->data = json_str(j, "data", caller->data);
    o->model = json_str(j, "model", caller->model);
    o->input_h = json_int(j, "input_h", 0);
    o->input_w = json_int(j, "input_w", 0);
    o->epochs = json_int(j, "epochs", caller->epochs);
    o->batch = json_int(j, "batch", caller->batch);
    o->optimizer = json_str(j, "optimizer", caller->optimizer);
    o->lr = json_num(j, "lr", caller->lr);
    o->momentum = json_num(j, "momentum", caller->momentum);
    o->weight_decay = json_num(j, "weight_decay", caller->weight_decay);
    o->schedule = json_str(j, "schedule", caller->schedule);
    o->clip_norm = json_num(j, "clip_norm", caller->clip_norm);
    o->loss_scale = json_bool(j, "loss_scale", caller->loss_scale);
    o->precision = json_str(j, "precision", "fp32"); /* checkpoints from before mixed precision are fp32 */
    o->label_smoothing = json_num(j, "label_smoothing", caller->label_smoothing);
    o->seed = (uint64_t)json_num(j, "seed", (double)caller->seed);
    o->hflip = json_bool(j, "hflip", caller->hflip);
    o->vflip = json_bool(j, "vflip", caller->vflip);
    o->rot90 = json_bool(j, "rot90", caller->rot90);
    o->random_resized_crop = json_bool(j, "random_resized_crop", caller->random_resized_crop);
    o->pad_crop = json_int(j, "pad_crop", caller->pad_crop);
    o->jitter = json_num(j, "jitter", caller->jitter);
    o->letterbox = json_bool(j, "letterbox", caller->letterbox);
    o->freeze_backbone = json_bool(j, "freeze_backbone", caller->freeze_backbone);
    o->log_every = json_int(j, "log_every", caller->log_every);
    o->init_from = NULL;
}

static kelp_status check_numbers(const kelp_train_options *o);

kelp_status kelp_train_options_from_config(const char *config_json, const char *source, const kelp_train_options *base,
                                           kelp_train_options *out, void **keep)
{
    *keep = NULL;
    cJSON *j = cJSON_Parse(config_json ? config_json : "");
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return kelp_set_error(KELP_ERR_FORMAT, "%s: the run configuration is missing or not a JSON object", source);
    }
    options_from_json(j, base, out);
    kelp_status s = check_numbers(out);
    if (s != KELP_OK) {
        cJSON_Delete(j);
        return kelp_wrap_error(s, "%s: run configuration: ", source);
    }
    *keep = j;
    return KELP_OK;
}

void kelp_train_config_free(void *keep) { cJSON_Delete(keep); }

/* The numbers of a run, whether from the caller or from a checkpoint's run configuration. */
static kelp_status check_numbers(const kelp_train_options *o)
{
    if (o->epochs < 1 || o->epochs > 100000)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "train: epochs %d outside [1, 100000]", o->epochs);
    if (o->batch < 1 || o->batch > 65536)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "train: batch %d outside [1, 65536]", o->batch);
    if (!(o->lr > 0) || !isfinite(o->lr))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "train: learning rate %g must be positive", o->lr);
    if (o->label_smoothing < 0 || o->label_smoothing > 1)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "train: label smoothing %g outside [0, 1]", o->label_smoothing);
    if (o->clip_norm < 0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "train: clip norm %g is negative", o->clip_norm);
    kelp_dtype precision;
    if (kelp_precision_parse(o->precision, &precision) != KELP_OK)
        return kelp_wrap_error(KELP_ERR_INVALID_ARG, "train: ");
    return KELP_OK;
}

static kelp_status check_options(const kelp_train_options *o)
{
    if (!o->data || !o->model || !o->out)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "train: a dataset, a model and a run directory are needed");
    return check_numbers(o);
}

/* ---- the model ---- */

static kelp_status read_model_json(run *r, int channels, char **json)
{
    for (const char *const *z = kelp_model_zoo_names(); *z; z++)
        if (strcmp(*z, r->o.model) == 0) {
            kelp_zoo_options zo = {.num_classes = r->classes, .height = r->o.input_h, .width = r->o.input_w,
                                   .channels = channels};
            return kelp_model_zoo_json(r->o.model, &zo, json);
        }
    return kelp_read_text_file(r->o.model, KELP_MODEL_FILE_MAX_BYTES, json);
}

/* The dataset's class names and the run's label smoothing go into the model file, so that every checkpoint knows
 * what its outputs mean. */
static kelp_status annotate_model(run *r, char **json)
{
    cJSON *m = cJSON_Parse(*json);
    if (!cJSON_IsObject(m)) {
        cJSON_Delete(m);
        return kelp_set_error(KELP_ERR_FORMAT, "%s: not a JSON model file", r->o.model);
    }
    cJSON *names = cJSON_CreateArray();
    for (int i = 0; names && i < r->classes; i++)
        cJSON_AddItemToArray(names, cJSON_CreateString(kelp_dataset_class_name(r->data, i)));
    cJSON_DeleteItemFromObjectCaseSensitive(m, "class_names");
    cJSON_AddItemToObject(m, "class_names", names);
    cJSON *loss = cJSON_GetObjectItemCaseSensitive(m, "loss");
    if (cJSON_IsObject(loss) && r->o.label_smoothing > 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(loss, "label_smoothing");
        cJSON_AddNumberToObject(loss, "label_smoothing", r->o.label_smoothing);
    }
    char *text = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    if (!text)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "train: out of memory");
    free(*json);
    *json = text;
    return KELP_OK;
}

static kelp_status build_graph(run *r, const char *json)
{
    kelp_graph_options go = kelp_graph_defaults();
    go.batch = r->o.batch;
    go.training = true;
    go.with_loss = true;
    KELP_TRY(kelp_precision_parse(r->o.precision, &go.precision));
    kelp_status s = kelp_graph_build(r->ctx, json, &go, &r->g);
    if (s != KELP_OK)
        return kelp_wrap_error(s, "%s: ", r->o.model);
    kelp_tensor *out = kelp_graph_output(r->g, 0);
    if (out->shape.ndim != 2 || out->shape.dims[1] != r->classes)
        return kelp_set_error(KELP_ERR_SHAPE, "%s: the model outputs %lld values per image, the dataset has %d classes",
                              r->o.model, (long long)out->shape.dims[out->shape.ndim - 1], r->classes);
    r->logits = malloc((size_t)r->o.batch * (size_t)r->classes * sizeof(float));
    return r->logits ? KELP_OK : kelp_set_error(KELP_ERR_NO_MEMORY, "train: out of memory");
}

/* Train only the layer that produces the logits. */
static kelp_status freeze_backbone(run *r)
{
    KELP_TRY(kelp_graph_freeze(r->g, "", true));
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s.", r->g->values[r->g->output_values[0]].name);
    kelp_status s = kelp_graph_freeze(r->g, prefix, false);
    if (s != KELP_OK)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "train: --freeze-backbone: the output layer '%s' has no parameters",
                              prefix);
    return KELP_OK;
}

static kelp_status make_segments(run *r)
{
    int max = kelp_graph_param_count(r->g) + 1;
    r->segments = calloc((size_t)max, sizeof *r->segments);
    if (!r->segments)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "train: out of memory");
    r->n_segments = kelp_graph_trainable_segments(r->g, r->segments, max);
    return KELP_OK;
}

/* ---- data ---- */

/* The model's input normalization (mean/std per channel) from its model file; 0.5/0.5 when absent. */
static void input_normalization(const kelp_graph *g, int channels, float *mean, float *std)
{
    const cJSON *in = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(kelp_graph_model(g), "inputs"), 0);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(in, "mean"), *s = cJSON_GetObjectItemCaseSensitive(in, "std");
    for (int c = 0; c < channels; c++) {
        const cJSON *mc = cJSON_GetArrayItem(m, c), *sc = cJSON_GetArrayItem(s, c);
        mean[c] = cJSON_IsNumber(mc) ? (float)mc->valuedouble : 0.5f;
        std[c] = cJSON_IsNumber(sc) ? (float)sc->valuedouble : 0.5f;
    }
}

static kelp_status open_loader(run *r, kelp_split split, bool training, kelp_loader **out)
{
    const kelp_shape *in = &kelp_graph_input(r->g, 0)->shape;
    kelp_loader_config c;
    kelp_loader_config_init(&c, split, r->o.batch, (int)in->dims[1], (int)in->dims[2]);
    c.augment.out_c = (int)in->dims[3];
    c.augment.fit = r->o.letterbox ? KELP_FIT_LETTERBOX : KELP_FIT_RESIZE;
    if (training) {
        c.augment.hflip = r->o.hflip;
        c.augment.vflip = r->o.vflip;
        c.augment.rot90 = r->o.rot90;
        c.augment.random_resized_crop = r->o.random_resized_crop;
        c.augment.pad = r->o.pad_crop;
        c.augment.brightness = c.augment.contrast = (float)r->o.jitter;
    }
    c.shuffle = training;
    c.seed = r->o.seed;
    c.threads = r->o.loader_threads > 0 ? r->o.loader_threads : 1;
    input_normalization(r->g, c.augment.out_c, c.mean, c.std);
    c.pixels_only = kelp_feed_pixels_only(kelp_ctx_backend(r->ctx));
    return kelp_loader_create(r->data, &c, out);
}

/* ---- one step ---- */

/* Puts a batch of `loader` into the graph's input and labels. */
static kelp_status feed(run *r, const kelp_loader *loader, const kelp_batch *b)
{
    KELP_TRY(kelp_graph_set_batch(r->g, b->n));
    kelp_tensor *x = kelp_graph_input(r->g, 0), *y = kelp_graph_label(r->g);
    KELP_TRY(kelp_feed_images(loader, b, x));
    return kelp_tensor_upload(y, b->labels, kelp_tensor_bytes(y));
}

/* Correct top-1 predictions among the batch's logits (ties: the lowest class). */
static int correct_predictions(run *r, const kelp_batch *b)
{
    kelp_tensor *out = kelp_graph_output(r->g, 0);
    if (kelp_tensor_download_floats(out, r->logits, kelp_shape_numel(&out->shape)) != KELP_OK)
        return 0;
    int correct = 0;
    for (int i = 0; i < b->n; i++) {
        const float *row = r->logits + (size_t)i * (size_t)r->classes;
        int best = 0;
        for (int k = 1; k < r->classes; k++)
            if (row[k] > row[best])
                best = k;
        correct += best == b->labels[i];
    }
    return correct;
}

static kelp_status train_step(run *r, const kelp_batch *b, double *loss, int *correct)
{
    KELP_TRY(feed(r, r->train, b));
    kelp_loss_scaler *scaler = &r->state.scaler;
    float lr = (float)kelp_lr_at(&r->schedule, r->state.optimizer_steps);
    /* one call, which a GPU replays as one recording; a step whose loss or (checked) gradients are not finite
     * leaves the parameters as they were */
    kelp_train_step_result res;
    KELP_TRY(kelp_train_step_run(r->step, lr, scaler->scale, &res));
    if (!isfinite(res.loss))
        return kelp_set_error(KELP_ERR_NUMERIC, "train: the loss is %g at step %lld; lower the learning rate",
                              (double)res.loss, (long long)r->state.optimizer_steps);
    *loss = res.loss;
    *correct = correct_predictions(r, b);
    if (r->o.loss_scale) {
        /* a step with inf/NaN gradients is skipped and does not count as a step */
        kelp_loss_scaler_update(scaler, res.applied);
        if (!res.applied)
            return KELP_OK;
    } else if (!res.applied) {
        return kelp_set_error(KELP_ERR_NUMERIC, "train: the gradient norm is %g at step %lld; lower the learning rate",
                              res.grad_norm, (long long)r->state.optimizer_steps);
    }
    r->state.optimizer_steps++;
    return KELP_OK;
}

/* Mean loss and top-1 over the validation split, in eval mode (running statistics, no dropout). */
static kelp_status validate(run *r, double *loss, double *accuracy)
{
    *loss = *accuracy = -1;
    if (!r->val)
        return KELP_OK;
    KELP_TRY(kelp_graph_set_training(r->g, false));
    KELP_TRY(kelp_loader_start_epoch(r->val, 0, 0));
    double total_loss = 0;
    int64_t seen = 0, correct = 0;
    const kelp_batch *b;
    kelp_status s;
    while ((s = kelp_loader_next(r->val, &b)) == KELP_OK && b) {
        float value;
        if ((s = feed(r, r->val, b)) != KELP_OK || (s = kelp_graph_forward(r->g)) != KELP_OK ||
            (s = kelp_graph_loss(r->g, &value)) != KELP_OK)
            break;
        total_loss += (double)value * b->n;
        correct += correct_predictions(r, b);
        seen += b->n;
    }
    kelp_status back = kelp_graph_set_training(r->g, true);
    KELP_TRY(s);
    KELP_TRY(back);
    if (seen) {
        *loss = total_loss / (double)seen;
        *accuracy = (double)correct / (double)seen;
    }
    return KELP_OK;
}

/* ---- records ---- */

static void log_json(run *r, cJSON *line)
{
    char *text = line ? cJSON_PrintUnformatted(line) : NULL;
    if (text && r->metrics) {
        fprintf(r->metrics, "%s\n", text);
        fflush(r->metrics);
    }
    free(text);
    cJSON_Delete(line);
}

static void emit(run *r, const kelp_train_event *e)
{
    cJSON *line = cJSON_CreateObject();
    cJSON_AddStringToObject(line, "type", e->kind == KELP_TRAIN_STEP ? "step" : "epoch");
    cJSON_AddNumberToObject(line, "epoch", (double)e->epoch);
    cJSON_AddNumberToObject(line, "step", (double)e->step);
    cJSON_AddNumberToObject(line, "loss", e->loss);
    cJSON_AddNumberToObject(line, "accuracy", e->accuracy);
    cJSON_AddNumberToObject(line, "lr", e->lr);
    cJSON_AddNumberToObject(line, "images_per_second", e->images_per_second);
    if (r->o.loss_scale) {
        cJSON_AddNumberToObject(line, "loss_scale", r->state.scaler.scale);
        cJSON_AddNumberToObject(line, "skipped_steps", (double)r->state.scaler.skipped_steps);
    }
    if (e->kind == KELP_TRAIN_EPOCH) {
        cJSON_AddNumberToObject(line, "val_loss", e->val_loss);
        cJSON_AddNumberToObject(line, "val_accuracy", e->val_accuracy);
        cJSON_AddBoolToObject(line, "best", e->best);
    }
    bool logged = e->kind == KELP_TRAIN_EPOCH || e->step % r->o.log_every == 0;
    if (logged)
        log_json(r, line);
    else
        cJSON_Delete(line);
    if (r->callback)
        r->callback(r->user, e);
}

static kelp_status save(run *r, const char *path)
{
    char *config = cJSON_PrintUnformatted(r->config);
    r->state.graph_step = kelp_graph_step(r->g);
    kelp_status s = config ? kelp_checkpoint_save(path, r->g, r->opt, &r->state, config)
                           : kelp_set_error(KELP_ERR_NO_MEMORY, "train: out of memory");
    free(config);
    return s;
}

/* ---- the run ---- */

static kelp_status make_run_dir(const char *path)
{
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return kelp_set_error(KELP_ERR_IO, "%s: cannot create the run directory: %s", path, strerror(errno));
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return kelp_set_error(KELP_ERR_IO, "%s: not a directory", path);
    return KELP_OK;
}

/* fp16's small gradients underflow to zero without loss scaling: its runs always scale (also those resumed from a
 * configuration that does not say so). */
static void fp16_scales_loss(kelp_train_options *o)
{
    if (o->precision && strcmp(o->precision, "fp16") == 0)
        o->loss_scale = true;
}

static kelp_status setup(run *r, const kelp_train_options *caller)
{
    r->o = *caller;
    fp16_scales_loss(&r->o);
    KELP_TRY(make_run_dir(caller->out));
    snprintf(r->checkpoint_last, sizeof r->checkpoint_last, "%s/last.ckpt", caller->out);
    snprintf(r->checkpoint_best, sizeof r->checkpoint_best, "%s/best.ckpt", caller->out);
    char *model = NULL, *config = NULL;
    if (caller->resume) {
        KELP_TRY(kelp_checkpoint_model(r->checkpoint_last, &model, &config));
        r->config = cJSON_Parse(config);
        free(config);
        if (!cJSON_IsObject(r->config)) {
            free(model);
            return kelp_set_error(KELP_ERR_FORMAT, "%s: the run configuration is not a JSON object",
                                  r->checkpoint_last);
        }
        options_from_json(r->config, caller, &r->o);
        fp16_scales_loss(&r->o);
    } else {
        r->config = options_json(&r->o);
    }
    if (r->o.log_every <= 0)
        r->o.log_every = 50;
    kelp_status s = check_options(&r->o);
    kelp_ctx_options co = kelp_ctx_defaults();
    co.threads = r->o.threads;
    co.device = r->o.device; /* NULL: the CPU */
    co.seed = r->o.seed;
    co.allow_tf32 = r->o.allow_tf32;
    co.nondeterministic = r->o.nondeterministic;
    co.autotune = r->o.autotune;
    if (s == KELP_OK)
        s = kelp_ctx_create(&co, &r->ctx);
    if (s == KELP_OK)
        s = kelp_dataset_open(r->o.data, &r->data);
    if (s == KELP_OK && kelp_dataset_task(r->data) != KELP_TASK_CLASSIFY)
        s = kelp_set_error(KELP_ERR_UNSUPPORTED, "%s: a %s dataset; kelp train handles classification for now",
                           r->o.data, kelp_task_name(kelp_dataset_task(r->data)));
    if (s == KELP_OK && kelp_dataset_count(r->data, KELP_SPLIT_TRAIN) == 0)
        s = kelp_set_error(KELP_ERR_FORMAT, "%s: no train split", r->o.data);
    if (s == KELP_OK) {
        r->classes = kelp_dataset_class_count(r->data);
        kelp_image_shape shape = {0};
        s = kelp_dataset_image_shape(r->data, KELP_SPLIT_TRAIN, 0, &shape);
        if (s == KELP_OK && !model)
            s = read_model_json(r, (int)shape.c, &model);
    }
    if (s == KELP_OK && !caller->resume)
        s = annotate_model(r, &model);
    if (s == KELP_OK)
        s = build_graph(r, model);
    free(model);
    KELP_TRY(s);

    kelp_optimizer_config oc;
    if (strcmp(r->o.optimizer, "adamw") == 0) {
        oc = kelp_optimizer_defaults(KELP_OPTIM_ADAMW);
    } else if (strcmp(r->o.optimizer, "sgd") == 0) {
        oc = kelp_optimizer_defaults(KELP_OPTIM_SGD);
        oc.momentum = (float)r->o.momentum;
    } else {
        return kelp_set_error(KELP_ERR_INVALID_ARG, "train: unknown optimizer '%s' (sgd or adamw)", r->o.optimizer);
    }
    oc.weight_decay = (float)r->o.weight_decay;
    KELP_TRY(kelp_optimizer_create(kelp_ctx_backend(r->ctx), &oc, kelp_shape_numel(&kelp_graph_params(r->g)->shape),
                                   &r->opt));
    if (r->o.init_from) {
        KELP_TRY(kelp_graph_load_weights(r->g, r->o.init_from, KELP_LOAD_SKIP_MISMATCHED));
        say(r, "initialized from %s (tensors of another shape, such as a new head, keep their fresh values)",
            r->o.init_from);
    }
    if (r->o.freeze_backbone)
        KELP_TRY(freeze_backbone(r));
    KELP_TRY(make_segments(r));
    kelp_train_step_config sc = {.segments = r->segments, .n_segments = r->n_segments, .clip_norm = r->o.clip_norm,
                                 .loss_scale = r->o.loss_scale};
    KELP_TRY(kelp_train_step_create(r->g, r->opt, &sc, &r->step));
    r->state = (kelp_train_state){.best_metric = -1, .best_epoch = -1};
    kelp_loss_scaler_init(&r->state.scaler);
    if (caller->resume) {
        KELP_TRY(kelp_checkpoint_load(r->checkpoint_last, r->g, r->opt, &r->state, NULL));
        say(r, "resumed %s at epoch %lld, batch %lld (step %lld)", r->checkpoint_last,
            (long long)r->state.epoch + 1, (long long)r->state.next_batch, (long long)r->state.optimizer_steps);
    }
    KELP_TRY(open_loader(r, KELP_SPLIT_TRAIN, true, &r->train));
    if (kelp_dataset_count(r->data, KELP_SPLIT_VAL) > 0)
        KELP_TRY(open_loader(r, KELP_SPLIT_VAL, false, &r->val));
    int64_t total = (int64_t)r->o.epochs * kelp_loader_batches_per_epoch(r->train);
    KELP_TRY(kelp_lr_schedule_parse_cli(r->o.schedule, r->o.lr, total, &r->schedule));
    char metrics[1100];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", r->o.out);
    r->metrics = fopen(metrics, caller->resume ? "a" : "w");
    if (!r->metrics)
        return kelp_set_error(KELP_ERR_IO, "%s: cannot write: %s", metrics, strerror(errno));
    return KELP_OK;
}

static kelp_status end_epoch(run *r, int64_t epoch, double loss, double accuracy, double images_per_second)
{
    kelp_train_event e = {.kind = KELP_TRAIN_EPOCH, .epoch = epoch, .epochs = r->o.epochs,
                          .step = r->state.optimizer_steps, .loss = loss, .accuracy = accuracy,
                          .lr = kelp_lr_at(&r->schedule, r->state.optimizer_steps),
                          .images_per_second = images_per_second};
    KELP_TRY(validate(r, &e.val_loss, &e.val_accuracy));
    double metric = r->val ? e.val_accuracy : accuracy;
    e.best = metric > r->state.best_metric;
    if (e.best) {
        r->state.best_metric = metric;
        r->state.best_epoch = epoch;
    }
    r->state.epoch = epoch + 1;
    r->state.next_batch = 0;
    KELP_TRY(save(r, r->checkpoint_last));
    if (e.best)
        KELP_TRY(save(r, r->checkpoint_best));
    emit(r, &e);
    return KELP_OK;
}

static kelp_status train_epochs(run *r)
{
    int64_t batches = kelp_loader_batches_per_epoch(r->train), steps = (int64_t)r->o.epochs * batches;
    for (int64_t epoch = r->state.epoch; epoch < r->o.epochs; epoch++) {
        KELP_TRY(kelp_loader_start_epoch(r->train, epoch, r->state.next_batch));
        double loss_sum = 0, started = now_seconds();
        int64_t seen = 0, correct_sum = 0;
        const kelp_batch *b;
        for (int64_t k = r->state.next_batch;; k++) {
            double t0 = now_seconds();
            KELP_TRY(kelp_loader_next(r->train, &b));
            if (!b)
                break;
            double loss = 0;
            int correct = 0;
            KELP_TRY(train_step(r, b, &loss, &correct));
            loss_sum += loss * b->n;
            correct_sum += correct;
            seen += b->n;
            kelp_train_event e = {.kind = KELP_TRAIN_STEP, .epoch = epoch, .epochs = r->o.epochs, .batch = k + 1,
                                  .batches = batches, .step = r->state.optimizer_steps, .steps = steps,
                                  .loss = loss, .accuracy = (double)correct / b->n,
                                  .lr = kelp_lr_at(&r->schedule, r->state.optimizer_steps - 1),
                                  .images_per_second = b->n / (now_seconds() - t0)};
            emit(r, &e);
            if (r->o.stop_after_steps > 0 && r->state.optimizer_steps >= r->o.stop_after_steps) {
                r->state.epoch = epoch;
                r->state.next_batch = k + 1;
                KELP_TRY(save(r, r->checkpoint_last));
                say(r, "stopped after step %lld; continue with --resume", (long long)r->state.optimizer_steps);
                return KELP_OK;
            }
        }
        double elapsed = now_seconds() - started;
        KELP_TRY(end_epoch(r, epoch, seen ? loss_sum / (double)seen : 0, seen ? (double)correct_sum / (double)seen : 0,
                           elapsed > 0 ? (double)seen / elapsed : 0));
    }
    return KELP_OK;
}

kelp_status kelp_train(const kelp_train_options *options, kelp_train_callback callback, void *user)
{
    run r;
    memset(&r, 0, sizeof r);
    r.callback = callback;
    r.user = user;
    kelp_status s = setup(&r, options);
    if (s == KELP_OK)
        s = train_epochs(&r);
    if (r.metrics)
        fclose(r.metrics);
    kelp_loader_destroy(r.val);
    kelp_loader_destroy(r.train);
    kelp_train_step_destroy(r.step);
    kelp_optimizer_destroy(r.opt);
    kelp_graph_destroy(r.g);
    kelp_dataset_close(r.data);
    kelp_ctx_destroy(r.ctx);
    cJSON_Delete(r.config);
    free(r.segments);
    free(r.logits);
    return s;
}
