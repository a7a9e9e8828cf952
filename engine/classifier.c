#include "engine/classifier.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/checkpoint.h"
#include "engine/feed.h"
#include "engine/graph_internal.h"
#include "engine/metrics.h"
#include "io/loader.h"

struct kelp_classifier {
    kelp_graph *g;
    int classes, batch, h, w, c;
    char **names;
    kelp_augment_config fit;
    float mean[KELP_AUGMENT_MAX_CHANNELS], std[KELP_AUGMENT_MAX_CHANNELS];
    float *logits;            /* (batch, classes) */
    uint8_t *fitted;          /* (h, w, c), one image */
    float *input;             /* (h, w, c), one image */
};

void kelp_classifier_destroy(kelp_classifier *c)
{
    if (!c)
        return;
    for (int i = 0; c->names && i < c->classes; i++)
        free(c->names[i]);
    free(c->names);
    free(c->logits);
    free(c->fitted);
    free(c->input);
    kelp_graph_destroy(c->g);
    free(c);
}

static char *dup_text(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Class names from the model file; "0", "1", ... when it has none. */
static kelp_status load_names(kelp_classifier *c, const cJSON *model, const char *path)
{
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(model, "class_names");
    if (names && (!cJSON_IsArray(names) || cJSON_GetArraySize(names) != c->classes))
        return kelp_set_error(KELP_ERR_FORMAT, "%s: the model has %d outputs but %d class names", path, c->classes,
                              cJSON_GetArraySize(names));
    c->names = calloc((size_t)c->classes, sizeof *c->names);
    if (!c->names)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
    for (int i = 0; i < c->classes; i++) {
        const cJSON *n = names ? cJSON_GetArrayItem(names, i) : NULL;
        char fallback[16];
        snprintf(fallback, sizeof fallback, "%d", i);
        c->names[i] = dup_text(cJSON_IsString(n) ? n->valuestring : fallback);
        if (!c->names[i])
            return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    return KELP_OK;
}

static void load_preparation(kelp_classifier *c, const cJSON *model, const char *config_text)
{
    kelp_augment_config_init(&c->fit, c->h, c->w);
    c->fit.out_c = c->c;
    cJSON *config = cJSON_Parse(config_text);
    const cJSON *letterbox = cJSON_GetObjectItemCaseSensitive(config, "letterbox");
    c->fit.fit = cJSON_IsTrue(letterbox) ? KELP_FIT_LETTERBOX : KELP_FIT_RESIZE;
    cJSON_Delete(config);
    const cJSON *in = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(model, "inputs"), 0);
    const cJSON *mean = cJSON_GetObjectItemCaseSensitive(in, "mean"), *std = cJSON_GetObjectItemCaseSensitive(in, "std");
    for (int k = 0; k < c->c && k < KELP_AUGMENT_MAX_CHANNELS; k++) {
        const cJSON *m = cJSON_GetArrayItem(mean, k), *s = cJSON_GetArrayItem(std, k);
        c->mean[k] = cJSON_IsNumber(m) ? (float)m->valuedouble : 0.5f;
        c->std[k] = cJSON_IsNumber(s) ? (float)s->valuedouble : 0.5f;
    }
}

kelp_status kelp_classifier_load(kelp_ctx *ctx, const char *path, int batch, kelp_classifier **out)
{
    *out = NULL;
    char *checkpoint = NULL, *model = NULL, *config = NULL;
    KELP_TRY(kelp_checkpoint_resolve(path, &checkpoint));
    kelp_status s = kelp_checkpoint_model(checkpoint, &model, &config);
    if (s != KELP_OK) {
        free(checkpoint);
        return s;
    }
    kelp_classifier *c = calloc(1, sizeof *c);
    kelp_graph_options o = kelp_graph_defaults();
    o.batch = batch;
    s = c ? kelp_graph_build(ctx, model, &o, &c->g) : kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory");
    if (s == KELP_OK)
        s = kelp_graph_load_weights(c->g, checkpoint, KELP_LOAD_STRICT);
    if (s == KELP_OK) {
        const kelp_shape *in = &kelp_graph_input(c->g, 0)->shape, *logits = &kelp_graph_output(c->g, 0)->shape;
        if (in->ndim != 4 || logits->ndim != 2 || in->dims[3] > KELP_AUGMENT_MAX_CHANNELS)
            s = kelp_set_error(KELP_ERR_UNSUPPORTED, "%s: not an image classifier (input rank %d, output rank %d)",
                               checkpoint, in->ndim, logits->ndim);
        else {
            c->batch = batch;
            c->h = (int)in->dims[1];
            c->w = (int)in->dims[2];
            c->c = (int)in->dims[3];
            c->classes = (int)logits->dims[1];
        }
    }
    if (s == KELP_OK)
        s = load_names(c, kelp_graph_model(c->g), checkpoint);
    if (s == KELP_OK) {
        load_preparation(c, kelp_graph_model(c->g), config);
        size_t pixels = (size_t)c->h * (size_t)c->w * (size_t)c->c;
        c->logits = malloc((size_t)batch * (size_t)c->classes * sizeof(float));
        c->fitted = malloc(pixels);
        c->input = malloc(pixels * sizeof(float));
        if (!c->logits || !c->fitted || !c->input)
            s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", checkpoint);
    }
    free(checkpoint);
    free(model);
    free(config);
    if (s != KELP_OK) {
        kelp_classifier_destroy(c);
        return s;
    }
    *out = c;
    return KELP_OK;
}

int kelp_classifier_classes(const kelp_classifier *c) { return c->classes; }
const char *kelp_classifier_class_name(const kelp_classifier *c, int index)
{
    return index >= 0 && index < c->classes ? c->names[index] : NULL;
}
const char *const *kelp_classifier_class_names(const kelp_classifier *c) { return (const char *const *)c->names; }
int kelp_classifier_batch(const kelp_classifier *c) { return c->batch; }
kelp_graph *kelp_classifier_graph(kelp_classifier *c) { return c->g; }
void kelp_classifier_input(const kelp_classifier *c, int *h, int *w, int *channels)
{
    *h = c->h;
    *w = c->w;
    *channels = c->c;
}
const kelp_augment_config *kelp_classifier_fit(const kelp_classifier *c) { return &c->fit; }
const float *kelp_classifier_mean(const kelp_classifier *c) { return c->mean; }
const float *kelp_classifier_std(const kelp_classifier *c) { return c->std; }

/* Softmax of each row, in double for the sum so that probabilities add up to 1 within float rounding. */
static void softmax_rows(const float *logits, int rows, int classes, float *out)
{
    for (int r = 0; r < rows; r++) {
        const float *x = logits + (size_t)r * classes;
        float *p = out + (size_t)r * classes;
        float max = x[0];
        for (int k = 1; k < classes; k++)
            max = x[k] > max ? x[k] : max;
        double sum = 0;
        for (int k = 0; k < classes; k++)
            sum += exp((double)x[k] - max);
        for (int k = 0; k < classes; k++)
            p[k] = (float)(exp((double)x[k] - max) / sum);
    }
}

/* The forward of the n images already in the graph's input, to probabilities. */
static kelp_status classify_input(kelp_classifier *c, int n, float *probabilities)
{
    kelp_tensor *y = kelp_graph_output(c->g, 0);
    KELP_TRY(kelp_graph_forward(c->g));
    KELP_TRY(kelp_tensor_download_floats(y, c->logits, kelp_shape_numel(&y->shape)));
    softmax_rows(c->logits, n, c->classes, probabilities);
    return KELP_OK;
}

kelp_status kelp_classifier_run(kelp_classifier *c, const float *images, int n, float *probabilities)
{
    KELP_TRY(kelp_graph_set_batch(c->g, n));
    kelp_tensor *x = kelp_graph_input(c->g, 0);
    KELP_TRY(kelp_tensor_upload_floats(x, images, kelp_shape_numel(&x->shape)));
    return classify_input(c, n, probabilities);
}

/* A loader batch: on a device its pixels are shipped and normalized there (engine/feed.h). */
static kelp_status classify_batch(kelp_classifier *c, const kelp_loader *loader, const kelp_batch *b,
                                  float *probabilities)
{
    KELP_TRY(kelp_graph_set_batch(c->g, b->n));
    KELP_TRY(kelp_feed_images(loader, b, kelp_graph_input(c->g, 0)));
    return classify_input(c, b->n, probabilities);
}

kelp_status kelp_classifier_image(kelp_classifier *c, const uint8_t *pixels, int h, int w, int channels,
                                  float *probabilities)
{
    kelp_augment_input in = {.pixels = pixels, .h = h, .w = w, .c = channels};
    kelp_augment_output out = {.pixels = c->fitted};
    KELP_TRY(kelp_augment_sample(&c->fit, 0, 0, &in, &out));
    KELP_TRY(kelp_augment_normalize(c->fitted, (size_t)c->h * (size_t)c->w, c->c, c->mean, c->std, c->input));
    return kelp_classifier_run(c, c->input, 1, probabilities);
}

void kelp_top_k(const float *probabilities, int classes, int k, int *indices)
{
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < classes; i++) {
            bool taken = false;
            for (int t = 0; t < j && !taken; t++)
                taken = indices[t] == i;
            if (!taken && (best < 0 || probabilities[i] > probabilities[best]))
                best = i;
        }
        indices[j] = best;
    }
}

kelp_status kelp_classifier_evaluate(kelp_classifier *c, kelp_dataset *ds, kelp_split split, int loader_threads,
                                     kelp_metrics *metrics, kelp_eval_fn each, void *user)
{
    if (kelp_dataset_class_count(ds) != c->classes)
        return kelp_set_error(KELP_ERR_SHAPE, "%s: %d classes, the model has %d", kelp_dataset_path(ds),
                              kelp_dataset_class_count(ds), c->classes);
    if (kelp_dataset_count(ds, split) == 0)
        return kelp_set_error(KELP_ERR_NOT_FOUND, "%s: no %s split", kelp_dataset_path(ds), kelp_split_name(split));
    kelp_loader_config lc;
    kelp_loader_config_init(&lc, split, c->batch, c->h, c->w);
    lc.augment = c->fit;
    lc.threads = loader_threads > 0 ? loader_threads : 1;
    memcpy(lc.mean, c->mean, sizeof lc.mean);
    memcpy(lc.std, c->std, sizeof lc.std);
    lc.pixels_only = kelp_feed_pixels_only(kelp_graph_input(c->g, 0)->backend);
    kelp_loader *loader;
    KELP_TRY(kelp_loader_create(ds, &lc, &loader));
    float *probabilities = malloc((size_t)c->batch * (size_t)c->classes * sizeof(float));
    kelp_status s = probabilities ? kelp_loader_start_epoch(loader, 0, 0)
                                  : kelp_set_error(KELP_ERR_NO_MEMORY, "evaluation: out of memory");
    const kelp_batch *b = NULL;
    while (s == KELP_OK && (s = kelp_loader_next(loader, &b)) == KELP_OK && b) {
        s = classify_batch(c, loader, b, probabilities);
        if (s == KELP_OK && metrics)
            s = kelp_metrics_add(metrics, probabilities, b->labels, b->n);
        for (int i = 0; s == KELP_OK && each && i < b->n; i++)
            each(user, b->indices[i], b->labels[i], probabilities + (size_t)i * (size_t)c->classes);
    }
    free(probabilities);
    kelp_loader_destroy(loader);
    return s;
}

kelp_status kelp_classifier_evaluate_file(kelp_ctx *ctx, const char *path, const char *data, kelp_split split,
                                          int batch, cJSON **out)
{
    *out = NULL;
    kelp_classifier *c = NULL;
    kelp_dataset *ds = NULL;
    kelp_metrics *m = NULL;
    kelp_status s = kelp_classifier_load(ctx, path, batch, &c);
    if (s == KELP_OK)
        s = kelp_dataset_open(data, &ds);
    if (s == KELP_OK)
        s = kelp_metrics_create(kelp_classifier_classes(c), -100, &m);
    if (s == KELP_OK)
        s = kelp_classifier_evaluate(c, ds, split, 1, m, NULL, NULL);
    if (s == KELP_OK)
        s = kelp_metrics_to_json(m, kelp_classifier_class_names(c), out);
    if (s == KELP_OK)
        cJSON_AddStringToObject(*out, "split", kelp_split_name(split));
    kelp_metrics_destroy(m);
    kelp_dataset_close(ds);
    kelp_classifier_destroy(c);
    return s;
}
