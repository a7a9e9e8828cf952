/* kelp's inference API: the small, stable part of libkelp.so that applications and module bundles call.
 *
 *   kelp_predictor *p;
 *   if (kelp_predictor_open("bundle/", NULL, &p) != KELP_OK) { fprintf(stderr, "%s\n", kelp_last_error()); ... }
 *   kelp_prediction *r;
 *   if (kelp_predictor_predict_file(p, "fish.jpg", 5, &r) == KELP_OK) {
 *       for (int i = 0; i < r->count; i++) printf("%s %.4f\n", r->labels[i], r->probabilities[i]);
 *       kelp_prediction_free(r);
 *   }
 *   kelp_predictor_close(p);
 *
 * Every call returns kelp_status; on failure kelp_last_error() (per thread) names the file or argument and what
 * is wrong. A predictor is used by one thread at a time; open one per thread to predict in parallel. Only the
 * functions of this header, kelp_last_error and kelp_status_name are exported by libkelp.so: the engine's
 * internals can change between versions, this API does not (the option structs end in reserved fields, zeroed by
 * the _defaults functions, so that they can grow).
 *
 * kelp runs its own OpenMP threads and sets OpenBLAS, process-wide, to one thread (BLAS calls run inside kelp's
 * threads); a host program that calls OpenBLAS itself gets one BLAS thread too. */
#ifndef KELP_PREDICTOR_H
#define KELP_PREDICTOR_H

#include <stddef.h>
#include <stdint.h>

#include "kelp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The version of libkelp, "MAJOR.MINOR.PATCH"; the API of this header changes only with MAJOR. */
const char *kelp_version(void);

typedef struct kelp_predictor kelp_predictor;

typedef struct kelp_predictor_options {
    const char *device; /* "cpu" (default) or "cuda[:N]" */
    int threads;        /* CPU threads; 0 = OMP_NUM_THREADS if set, else all cores */
    /* Encoded images declaring more pixels are refused unread. 0: a bundle's own limit (model/bundle.json's
     * max_pixels, the one its REST API applies), else KELP_PREDICTOR_MAX_PIXELS, which also caps any value. */
    uint64_t max_pixels;
    uint64_t reserved[4];
} kelp_predictor_options;

kelp_predictor_options kelp_predictor_defaults(void);

/* Opens a module bundle directory (its model/weights.safetensors) or a checkpoint file. options may be NULL. */
kelp_status kelp_predictor_open(const char *path, const kelp_predictor_options *options, kelp_predictor **out);
void kelp_predictor_close(kelp_predictor *p);

/* "classification": the only task so far. */
const char *kelp_predictor_task(const kelp_predictor *p);
int kelp_predictor_class_count(const kelp_predictor *p);
const char *kelp_predictor_class_name(const kelp_predictor *p, int index); /* NULL outside [0, count) */
/* The input size the model runs at; images of any size are fitted to it as in training. */
void kelp_predictor_input_size(const kelp_predictor *p, int *height, int *width, int *channels);

/* The answer for one image: the top_k classes, most probable first (ties: the lower class index). */
typedef struct kelp_prediction {
    int count;                  /* min(top_k, classes) */
    const int *classes;         /* class indices */
    const char *const *labels;  /* class names */
    const float *probabilities; /* softmax probabilities */
} kelp_prediction;

/* Decoded pixels: h x w x channels uint8, row-major HWC, channels 1 (gray) or 3 (RGB); converted to the model's
 * channels. top_k <= 0 means 5. */
kelp_status kelp_predictor_predict_pixels(kelp_predictor *p, const uint8_t *pixels, int height, int width,
                                          int channels, int top_k, kelp_prediction **out);
/* An encoded PNG or JPEG in memory; `name` (may be NULL) names it in error messages. An image whose header
 * declares more than the options' max_pixels is refused (KELP_ERR_INVALID_ARG) before any pixel is decoded; data
 * that is not a PNG or JPEG image is KELP_ERR_FORMAT. */
#define KELP_PREDICTOR_MAX_PIXELS ((uint64_t)1 << 28)
kelp_status kelp_predictor_predict_encoded(kelp_predictor *p, const void *data, size_t size, const char *name,
                                           int top_k, kelp_prediction **out);
kelp_status kelp_predictor_predict_file(kelp_predictor *p, const char *path, int top_k, kelp_prediction **out);

/* Writes the model with its current weights as an ONNX file (IR 8, opset 17, NCHW input "input", output "logits";
 * docs/model-format.md), replacing `path` atomically. */
kelp_status kelp_predictor_save_onnx(kelp_predictor *p, const char *path);

/* Frees what kelp_prediction_json and kelp_finetune return. */
void kelp_free(void *p);

/* {"labels": [...], "probabilities": [...]} as UTF-8 text; free with kelp_free. NULL when out of memory. */
char *kelp_prediction_json(const kelp_prediction *r);
void kelp_prediction_free(kelp_prediction *r);

/* Fine-tuning a bundle or checkpoint on an HDF5 dataset (docs/dataset-format.md): the recipe it was trained with,
 * starting from its weights, with these overrides. */
typedef struct kelp_finetune_options {
    const char *data;   /* the HDF5 dataset; its train split is trained, val picks the best epoch, test is scored */
    const char *out;    /* the new weights file (a checkpoint without optimizer state), replaced atomically */
    int epochs;         /* 0 = 1 */
    int batch;          /* 0 = the original run's */
    double lr;          /* 0 = the original run's */
    const char *device; /* "cpu" (default) or "cuda[:N]" */
    int threads;        /* 0 = OMP_NUM_THREADS if set, else all cores */
    uint64_t seed;
    uint64_t reserved[4];
} kelp_finetune_options;

kelp_finetune_options kelp_finetune_defaults(void);

/* Trains in a temporary run directory beside `out` (`out`.train-XXXXXX, removed afterwards; stale ones left by a
 * killed run are removed first) and writes the best epoch's weights to `out`. Holds an advisory lock (flock) on
 * `out`.lock, created beside `out` and left there, for the whole run: while another fine-tuning of the same `out`
 * runs, in any process, it fails at once with KELP_ERR_IO and a message naming `out`. *result_json (free with
 * kelp_free; may be NULL) receives {"epochs", "scored_split", "top1", "top5", "images", "weights"}: the scores on the
 * test split, or val, or train, whichever the dataset has first. The dataset's class names become the model's: a zoo
 * model gets a new head when their number differs; a JSON model file needs the same number. One fine-tuning at a time
 * per process (HDF5 is not thread-safe). */
kelp_status kelp_finetune(const char *path, const kelp_finetune_options *options, char **result_json);

#ifdef __cplusplus
}
#endif

#endif
