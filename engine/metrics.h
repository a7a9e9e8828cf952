/* Classification metrics from a confusion matrix: top-1 and top-k accuracy, per-class precision, recall, F1 and
 * support, macro averages, and a JSON report.
 *
 *   kelp_metrics *m; kelp_metrics_create(10, -100, &m);
 *   for each batch: kelp_metrics_add(m, logits, labels, rows);     logits (rows, K) on the host, labels int32
 *   kelp_metrics_top1(m); kelp_metrics_to_json(m, names, &json); kelp_metrics_destroy(m);
 *
 * Conventions (the ones scikit-learn uses with zero_division=0):
 * - The prediction is the argmax of a row; ties go to the lowest class index. The same order ranks the top k: a
 *   label counts as a top-k hit when fewer than k classes beat it, a class beating it when its logit is larger, or
 *   equal with a lower index.
 * - A rate whose denominator is 0 is 0: precision of a class never predicted, recall of a class with no support,
 *   F1 when precision and recall are both 0, accuracy before any sample.
 * - Macro averages are unweighted means over the classes that occur as a label or as a prediction; classes that
 *   never occur at all would only add zeros. */
#ifndef KELP_ENGINE_METRICS_H
#define KELP_ENGINE_METRICS_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "kelp/status.h"

/* The confusion matrix is dense (K*K counts); this keeps it within 8 GiB. */
#define KELP_METRICS_MAX_CLASSES 32768

typedef struct kelp_metrics kelp_metrics;

typedef struct kelp_class_metrics {
    double precision, recall, f1;
    int64_t support;   /* samples whose label is this class */
    int64_t predicted; /* samples predicted as this class */
} kelp_class_metrics;

typedef struct kelp_macro_metrics {
    double precision, recall, f1;
    int classes; /* how many classes were averaged */
} kelp_macro_metrics;

/* num_classes K in [1, KELP_METRICS_MAX_CLASSES]. Labels equal to ignore_index, or outside [0, K), are not
 * counted. */
kelp_status kelp_metrics_create(int num_classes, int ignore_index, kelp_metrics **out);
void kelp_metrics_destroy(kelp_metrics *m);
void kelp_metrics_reset(kelp_metrics *m);

// logits (rows, K) row-major, labels (rows)
/* A NaN logit fails the whole batch (KELP_ERR_NUMERIC, naming the row) before anything is counted: a diverged
 * model has no meaningful prediction. */
kelp_status kelp_metrics_add(kelp_metrics *m, const float *logits, const int32_t *labels, int64_t rows);

int kelp_metrics_classes(const kelp_metrics *m);
/* The k of kelp_metrics_top5: min(5, K). */
int kelp_metrics_top_k(const kelp_metrics *m);
/* Samples counted so far (ignored labels excluded). */
int64_t kelp_metrics_samples(const kelp_metrics *m);
double kelp_metrics_top1(const kelp_metrics *m);
double kelp_metrics_top5(const kelp_metrics *m);
kelp_status kelp_metrics_class(const kelp_metrics *m, int class_index, kelp_class_metrics *out);
kelp_macro_metrics kelp_metrics_macro(const kelp_metrics *m);
/* (K, K) row-major: rows are true classes, columns predicted classes. Valid until the next add or reset. */
const int64_t *kelp_metrics_confusion(const kelp_metrics *m);

/* {"samples", "top1", "top5", "top_k", "macro": {"precision", "recall", "f1"},
 *  "per_class": [{"name", "precision", "recall", "f1", "support"}], "confusion": [[...]]}.
 * class_names: K strings, or NULL for "0", "1", ... Free the result with cJSON_Delete. */
kelp_status kelp_metrics_to_json(const kelp_metrics *m, const char *const *class_names, cJSON **out);

#endif
