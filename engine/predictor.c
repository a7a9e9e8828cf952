/* The public inference API (include/kelp/predictor.h) on top of the classifier: what libkelp.so exports, and what
 * `kelp predict` runs on, so the CLI and a bundle give the same answers by construction. */
#include "kelp/predictor.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/classifier.h"
#include "engine/onnx_export.h"
#include "io/image.h"
#include "io/path.h"
#include "io/text_file.h"
#include "kelp/kelp.h"

struct kelp_predictor {
    kelp_ctx *ctx;
    kelp_classifier *classifier;
    float *probabilities; /* (classes) */
    int *order;           /* (classes), the top-k indices */
    uint64_t max_pixels;
};

const char *kelp_version(void) { return KELP_VERSION_STRING; }

kelp_predictor_options kelp_predictor_defaults(void)
{
    kelp_predictor_options o = {.device = "cpu"};
    return o;
}

void kelp_predictor_close(kelp_predictor *p)
{
    if (!p)
        return;
    kelp_classifier_destroy(p->classifier);
    kelp_ctx_destroy(p->ctx);
    free(p->probabilities);
    free(p->order);
    free(p);
}

/* The decoder's own limit: a predictor never promises more. */
_Static_assert(KELP_PREDICTOR_MAX_PIXELS == KELP_IMAGE_MAX_PIXELS, "the predictor's pixel cap is the decoder's");

/* A bundle's pixel limit (model/bundle.json), so that `kelp predict --bundle` refuses what its server refuses. */
static uint64_t bundle_max_pixels(const char *path)
{
    uint64_t limit = KELP_PREDICTOR_MAX_PIXELS;
    struct stat st;
    char file[PATH_MAX], *text = NULL;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode) ||
        kelp_path_join(file, sizeof file, path, "model/bundle.json") != KELP_OK ||
        kelp_read_text_file(file, 1 << 20, &text) != KELP_OK) {
        kelp_clear_error();
        return limit;
    }
    cJSON *info = cJSON_Parse(text);
    const cJSON *v = cJSON_GetObjectItem(info, "max_pixels");
    if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= (double)limit)
        limit = (uint64_t)v->valuedouble;
    cJSON_Delete(info);
    free(text);
    return limit;
}

kelp_status kelp_predictor_open(const char *path, const kelp_predictor_options *options, kelp_predictor **out)
{
    if (!out)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_predictor_open: out is NULL");
    *out = NULL;
    kelp_predictor_options o = options ? *options : kelp_predictor_defaults();
    if (!path)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_predictor_open: path is NULL");
    kelp_predictor *p = calloc(1, sizeof *p);
    if (p)
        p->max_pixels = !o.max_pixels                              ? bundle_max_pixels(path)
                        : o.max_pixels < KELP_PREDICTOR_MAX_PIXELS ? o.max_pixels
                                                                   : KELP_PREDICTOR_MAX_PIXELS;
    kelp_ctx_options co = kelp_ctx_defaults();
    co.device = o.device; /* NULL: the CPU */
    co.threads = o.threads;
    kelp_status s = p ? kelp_ctx_create(&co, &p->ctx) : kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
    if (s == KELP_OK)
        s = kelp_classifier_load(p->ctx, path, 1, &p->classifier);
    if (s == KELP_OK) {
        size_t classes = (size_t)kelp_classifier_classes(p->classifier);
        p->probabilities = malloc(classes * sizeof *p->probabilities);
        p->order = malloc(classes * sizeof *p->order);
        if (!p->probabilities || !p->order)
            s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    if (s != KELP_OK) {
        kelp_predictor_close(p);
        return s;
    }
    *out = p;
    return KELP_OK;
}

const char *kelp_predictor_task(const kelp_predictor *p) { return p ? "classification" : NULL; }
int kelp_predictor_class_count(const kelp_predictor *p) { return p ? kelp_classifier_classes(p->classifier) : 0; }
const char *kelp_predictor_class_name(const kelp_predictor *p, int index)
{
    return p ? kelp_classifier_class_name(p->classifier, index) : NULL;
}

void kelp_predictor_input_size(const kelp_predictor *p, int *height, int *width, int *channels)
{
    int h = 0, w = 0, c = 0;
    if (p)
        kelp_classifier_input(p->classifier, &h, &w, &c);
    if (height)
        *height = h;
    if (width)
        *width = w;
    if (channels)
        *channels = c;
}

/* One allocation holds the struct, then the label pointers, the indices, the probabilities and the label text, so
 * a prediction outlives its predictor and is freed with one call. The order keeps each part aligned: pointers (8)
 * right after the struct (a multiple of 8), then 4-byte ints and floats, then bytes. */
static kelp_status make_prediction(kelp_predictor *p, int top_k, kelp_prediction **out)
{
    int classes = kelp_classifier_classes(p->classifier);
    int k = top_k <= 0 ? 5 : top_k;
    k = k < classes ? k : classes;
    kelp_top_k(p->probabilities, classes, k, p->order);
    size_t text = 0;
    for (int i = 0; i < k; i++)
        text += strlen(kelp_classifier_class_name(p->classifier, p->order[i])) + 1;
    size_t bytes = sizeof(kelp_prediction) + (size_t)k * (sizeof(int) + sizeof(float) + sizeof(char *)) + text;
    kelp_prediction *r = malloc(bytes);
    if (!r)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "prediction: out of memory");
    const char **labels = (const char **)(r + 1);
    int *indices = (int *)(labels + k);
    float *probs = (float *)(indices + k);
    char *names = (char *)(probs + k);
    for (int i = 0; i < k; i++) {
        const char *name = kelp_classifier_class_name(p->classifier, p->order[i]);
        size_t len = strlen(name) + 1;
        memcpy(names, name, len);
        labels[i] = names;
        names += len;
        indices[i] = p->order[i];
        probs[i] = p->probabilities[p->order[i]];
    }
    r->count = k;
    r->classes = indices;
    r->labels = labels;
    r->probabilities = probs;
    *out = r;
    return KELP_OK;
}

/* The predictor's pixel limit: checked on an encoded image's header before it is decoded, and on raw pixels. */
static kelp_status check_pixels(const kelp_predictor *p, const char *name, uint64_t height, uint64_t width)
{
    if (height * width > p->max_pixels)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "%s: %llu x %llu pixels, more than the limit of %llu", name,
                              (unsigned long long)height, (unsigned long long)width,
                              (unsigned long long)p->max_pixels);
    return KELP_OK;
}

kelp_status kelp_predictor_predict_pixels(kelp_predictor *p, const uint8_t *pixels, int height, int width,
                                          int channels, int top_k, kelp_prediction **out)
{
    if (!p || !pixels || !out)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_predictor_predict_pixels: NULL argument");
    *out = NULL;
    if (height < 1 || width < 1 || (channels != 1 && channels != 3))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "image of %d x %d x %d: need a positive size and 1 or 3 channels",
                              height, width, channels);
    KELP_TRY(check_pixels(p, "image", (uint64_t)height, (uint64_t)width));
    KELP_TRY(kelp_classifier_image(p->classifier, pixels, height, width, channels, p->probabilities));
    return make_prediction(p, top_k, out);
}

static kelp_status predict_image(kelp_predictor *p, kelp_image *img, int top_k, kelp_prediction **out)
{
    kelp_status s = kelp_predictor_predict_pixels(p, img->pixels, (int)img->h, (int)img->w, (int)img->c, top_k, out);
    kelp_image_free(img);
    return s;
}

kelp_status kelp_predictor_predict_encoded(kelp_predictor *p, const void *data, size_t size, const char *name,
                                           int top_k, kelp_prediction **out)
{
    if (!p || !data || !out)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_predictor_predict_encoded: NULL argument");
    *out = NULL;
    int h, w, c;
    kelp_classifier_input(p->classifier, &h, &w, &c);
    (void)h, (void)w; /* decoded straight to the model's channels */
    name = name ? name : "image";
    kelp_image_header header;
    KELP_TRY(kelp_image_probe_memory(data, size, name, &header));
    KELP_TRY(check_pixels(p, name, header.h, header.w));
    kelp_image img = {0};
    KELP_TRY(kelp_image_decode_memory(data, size, name, c, &img));
    return predict_image(p, &img, top_k, out);
}

kelp_status kelp_predictor_predict_file(kelp_predictor *p, const char *path, int top_k, kelp_prediction **out)
{
    if (!p || !path || !out)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_predictor_predict_file: NULL argument");
    *out = NULL;
    uint8_t *data;
    size_t size;
    KELP_TRY(kelp_image_read_file(path, &data, &size));
    kelp_status s = kelp_predictor_predict_encoded(p, data, size, path, top_k, out);
    free(data);
    return s;
}

char *kelp_prediction_json(const kelp_prediction *r)
{
    if (!r)
        return NULL;
    cJSON *o = cJSON_CreateObject(), *labels = cJSON_AddArrayToObject(o, "labels"),
          *probs = cJSON_AddArrayToObject(o, "probabilities");
    for (int i = 0; labels && probs && i < r->count; i++) {
        cJSON_AddItemToArray(labels, cJSON_CreateString(r->labels[i]));
        cJSON_AddItemToArray(probs, cJSON_CreateNumber(r->probabilities[i]));
    }
    char *text = labels && probs ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return text;
}

void kelp_prediction_free(kelp_prediction *r) { free(r); }

kelp_status kelp_predictor_save_onnx(kelp_predictor *p, const char *path)
{
    if (!p || !path)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_predictor_save_onnx: NULL argument");
    return kelp_onnx_export(kelp_classifier_graph(p->classifier), path, NULL);
}
