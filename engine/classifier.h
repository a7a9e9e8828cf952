/* A trained classifier loaded from a checkpoint, ready to label images: the graph in inference mode, the class
 * names and the input preparation (fit to the input size, normalization) that training used. `kelp eval`,
 * `kelp predict` and the report are built on it. */
#ifndef KELP_ENGINE_CLASSIFIER_H
#define KELP_ENGINE_CLASSIFIER_H

#include <stdint.h>

#include "io/augment.h"
#include "io/dataset.h"
#include "kelp/kelp.h"

typedef struct kelp_classifier kelp_classifier;

/* From a checkpoint file or a module bundle directory; batch: the largest number of images classified at once. */
kelp_status kelp_classifier_load(kelp_ctx *ctx, const char *path, int batch, kelp_classifier **out);
void kelp_classifier_destroy(kelp_classifier *c);

int kelp_classifier_classes(const kelp_classifier *c);
const char *kelp_classifier_class_name(const kelp_classifier *c, int index);
const char *const *kelp_classifier_class_names(const kelp_classifier *c);
int kelp_classifier_batch(const kelp_classifier *c);
kelp_graph *kelp_classifier_graph(kelp_classifier *c); /* inference mode, the loaded weights */
/* The input the model takes (h, w, c) and the preparation that fits an image to it. */
void kelp_classifier_input(const kelp_classifier *c, int *h, int *w, int *channels);
const kelp_augment_config *kelp_classifier_fit(const kelp_classifier *c);
const float *kelp_classifier_mean(const kelp_classifier *c);
const float *kelp_classifier_std(const kelp_classifier *c);

/* Probabilities (n, classes) for n <= batch images already prepared: normalized float NHWC at the input size. */
kelp_status kelp_classifier_run(kelp_classifier *c, const float *images, int n, float *probabilities);

/* Probabilities (classes) for one decoded uint8 HWC image of any size: fitted, normalized, run. */
kelp_status kelp_classifier_image(kelp_classifier *c, const uint8_t *pixels, int h, int w, int channels,
                                  float *probabilities);

/* Called for every image of an evaluation: its dataset index, true label, and the probabilities. */
typedef void (*kelp_eval_fn)(void *user, int64_t index, int label, const float *probabilities);

/* Classifies every image of a dataset split (fitted as in training, no augmentation), adding each batch to
 * `metrics` (engine/metrics.h; may be NULL) and calling `each` (may be NULL). The dataset's classes must be the
 * model's. */
struct kelp_metrics;
kelp_status kelp_classifier_evaluate(kelp_classifier *c, kelp_dataset *ds, kelp_split split, int loader_threads,
                                     struct kelp_metrics *metrics, kelp_eval_fn each, void *user);

/* Loads `path` (checkpoint or bundle), evaluates a split of `data` and returns kelp_metrics_to_json's object with
 * "split" added (cJSON_Delete it). */
struct cJSON;
kelp_status kelp_classifier_evaluate_file(kelp_ctx *ctx, const char *path, const char *data, kelp_split split,
                                          int batch, struct cJSON **out);

/* The k most probable classes (ties: the lower index), k <= classes. */
void kelp_top_k(const float *probabilities, int classes, int k, int *indices);

#endif
