/* Classification metrics from a confusion matrix (conventions in metrics.h). */
#include "engine/metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kelp_metrics {
    int classes, ignore_index, k;
    int64_t samples, top1_hits, topk_hits;
    int64_t *confusion;           /* (K, K): true class, predicted class */
    int64_t *support, *predicted; /* row and column sums of the confusion matrix, kept so queries are O(1) */
};

kelp_status kelp_metrics_create(int num_classes, int ignore_index, kelp_metrics **out)
{
    *out = NULL;
    if (num_classes < 1 || num_classes > KELP_METRICS_MAX_CLASSES)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "metrics: %d classes; expected 1 to %d", num_classes,
                              KELP_METRICS_MAX_CLASSES);
    kelp_metrics *m = calloc(1, sizeof *m);
    size_t k = (size_t)num_classes;
    if (m) {
        m->confusion = calloc(k * k, sizeof *m->confusion);
        m->support = calloc(k, sizeof *m->support);
        m->predicted = calloc(k, sizeof *m->predicted);
    }
    if (!m || !m->confusion || !m->support || !m->predicted) {
        kelp_metrics_destroy(m);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "metrics: no memory for a %d x %d confusion matrix", num_classes,
                              num_classes);
    }
    m->classes = num_classes;
    m->ignore_index = ignore_index;
    m->k = num_classes < 5 ? num_classes : 5;
    *out = m;
    return KELP_OK;
}

void kelp_metrics_destroy(kelp_metrics *m)
{
    if (!m)
        return;
    free(m->confusion);
    free(m->support);
    free(m->predicted);
    free(m);
}

void kelp_metrics_reset(kelp_metrics *m)
{
    size_t k = (size_t)m->classes;
    memset(m->confusion, 0, k * k * sizeof *m->confusion);
    memset(m->support, 0, k * sizeof *m->support);
    memset(m->predicted, 0, k * sizeof *m->predicted);
    m->samples = m->top1_hits = m->topk_hits = 0;
}

static bool is_counted(const kelp_metrics *m, int32_t label)
{
    return label != m->ignore_index && label >= 0 && label < m->classes;
}

/* The first of the largest: ties go to the lowest index. */
static int argmax(const float *row, int k)
{
    int best = 0;
    for (int j = 1; j < k; j++)
        if (row[j] > row[best])
            best = j;
    return best;
}

/* How many classes come before `label` in the order argmax uses (larger logit, then lower index). */
static int rank_of(const float *row, int k, int label)
{
    int rank = 0;
    for (int j = 0; j < k; j++)
        rank += row[j] > row[label] || (row[j] == row[label] && j < label);
    return rank;
}

static kelp_status check_finite_rows(const kelp_metrics *m, const float *logits, const int32_t *labels,
                                     int64_t rows)
{
    for (int64_t i = 0; i < rows; i++) {
        if (!is_counted(m, labels[i]))
            continue;
        const float *row = logits + i * m->classes;
        for (int j = 0; j < m->classes; j++)
            if (isnan(row[j]))
                return kelp_set_error(KELP_ERR_NUMERIC, "metrics: logit %d of row %lld is NaN", j, (long long)i);
    }
    return KELP_OK;
}

// logits (rows, K), labels (rows)
kelp_status kelp_metrics_add(kelp_metrics *m, const float *logits, const int32_t *labels, int64_t rows)
{
    if (rows < 0 || rows > INT64_MAX / m->classes)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "metrics: %lld rows", (long long)rows);
    if (rows > 0 && (!logits || !labels))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "metrics: %lld rows but no %s", (long long)rows,
                              logits ? "labels" : "logits");
    KELP_TRY(check_finite_rows(m, logits, labels, rows));
    for (int64_t i = 0; i < rows; i++) {
        int label = labels[i];
        if (!is_counted(m, label))
            continue;
        const float *row = logits + i * m->classes;
        int predicted = argmax(row, m->classes);
        m->confusion[(size_t)label * (size_t)m->classes + (size_t)predicted]++;
        m->support[label]++;
        m->predicted[predicted]++;
        m->samples++;
        m->top1_hits += predicted == label;
        m->topk_hits += rank_of(row, m->classes, label) < m->k;
    }
    return KELP_OK;
}

int kelp_metrics_classes(const kelp_metrics *m) { return m->classes; }

int kelp_metrics_top_k(const kelp_metrics *m) { return m->k; }

int64_t kelp_metrics_samples(const kelp_metrics *m) { return m->samples; }

static double ratio(int64_t num, int64_t den) { return den > 0 ? (double)num / (double)den : 0.0; }

double kelp_metrics_top1(const kelp_metrics *m) { return ratio(m->top1_hits, m->samples); }

double kelp_metrics_top5(const kelp_metrics *m) { return ratio(m->topk_hits, m->samples); }

static kelp_class_metrics class_metrics(const kelp_metrics *m, int c)
{
    int64_t tp = m->confusion[(size_t)c * (size_t)m->classes + (size_t)c];
    int64_t fp = m->predicted[c] - tp, fn = m->support[c] - tp;
    return (kelp_class_metrics){
        .precision = ratio(tp, m->predicted[c]),
        .recall = ratio(tp, m->support[c]),
        /* 2PR/(P+R) written in counts, which is 0 rather than 0/0 when both are 0 */
        .f1 = ratio(2 * tp, 2 * tp + fp + fn),
        .support = m->support[c],
        .predicted = m->predicted[c],
    };
}

kelp_status kelp_metrics_class(const kelp_metrics *m, int class_index, kelp_class_metrics *out)
{
    *out = (kelp_class_metrics){0};
    if (class_index < 0 || class_index >= m->classes)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "metrics: class %d is not in [0, %d)", class_index, m->classes);
    *out = class_metrics(m, class_index);
    return KELP_OK;
}

kelp_macro_metrics kelp_metrics_macro(const kelp_metrics *m)
{
    kelp_macro_metrics macro = {0};
    for (int c = 0; c < m->classes; c++) {
        if (m->support[c] == 0 && m->predicted[c] == 0)
            continue;
        kelp_class_metrics cm = class_metrics(m, c);
        macro.precision += cm.precision;
        macro.recall += cm.recall;
        macro.f1 += cm.f1;
        macro.classes++;
    }
    if (macro.classes > 0) {
        macro.precision /= macro.classes;
        macro.recall /= macro.classes;
        macro.f1 /= macro.classes;
    }
    return macro;
}

const int64_t *kelp_metrics_confusion(const kelp_metrics *m) { return m->confusion; }

/* ---- JSON ---- */

static bool add_rates(cJSON *obj, double precision, double recall, double f1)
{
    return cJSON_AddNumberToObject(obj, "precision", precision) && cJSON_AddNumberToObject(obj, "recall", recall) &&
           cJSON_AddNumberToObject(obj, "f1", f1);
}

/* Appends `item` (which may be NULL after a failed allocation); the array owns it from then on. */
static cJSON *append(cJSON *array, cJSON *item)
{
    if (item && cJSON_AddItemToArray(array, item))
        return item;
    cJSON_Delete(item);
    return NULL;
}

static bool add_class(cJSON *array, const kelp_metrics *m, int c, const char *name)
{
    char index_name[16];
    if (!name) {
        snprintf(index_name, sizeof index_name, "%d", c);
        name = index_name;
    }
    kelp_class_metrics cm = class_metrics(m, c);
    cJSON *obj = append(array, cJSON_CreateObject());
    return obj && cJSON_AddStringToObject(obj, "name", name) && add_rates(obj, cm.precision, cm.recall, cm.f1) &&
           cJSON_AddNumberToObject(obj, "support", (double)cm.support);
}

static bool add_confusion_row(cJSON *array, const kelp_metrics *m, int c)
{
    cJSON *row = append(array, cJSON_CreateArray());
    const int64_t *counts = m->confusion + (size_t)c * (size_t)m->classes;
    for (int j = 0; row && j < m->classes; j++)
        if (!append(row, cJSON_CreateNumber((double)counts[j])))
            return false;
    return row != NULL;
}

static bool fill_json(cJSON *root, const kelp_metrics *m, const char *const *class_names)
{
    kelp_macro_metrics macro = kelp_metrics_macro(m);
    if (!cJSON_AddNumberToObject(root, "samples", (double)m->samples) ||
        !cJSON_AddNumberToObject(root, "top1", kelp_metrics_top1(m)) ||
        !cJSON_AddNumberToObject(root, "top5", kelp_metrics_top5(m)) || !cJSON_AddNumberToObject(root, "top_k", m->k))
        return false;
    cJSON *macro_obj = cJSON_AddObjectToObject(root, "macro");
    if (!macro_obj || !add_rates(macro_obj, macro.precision, macro.recall, macro.f1))
        return false;
    cJSON *per_class = cJSON_AddArrayToObject(root, "per_class");
    cJSON *confusion = cJSON_AddArrayToObject(root, "confusion");
    bool ok = per_class && confusion;
    for (int c = 0; c < m->classes && ok; c++)
        ok = add_class(per_class, m, c, class_names ? class_names[c] : NULL) && add_confusion_row(confusion, m, c);
    return ok;
}

kelp_status kelp_metrics_to_json(const kelp_metrics *m, const char *const *class_names, cJSON **out)
{
    *out = NULL;
    for (int c = 0; class_names && c < m->classes; c++)
        if (!class_names[c])
            return kelp_set_error(KELP_ERR_INVALID_ARG, "metrics: class name %d of %d is NULL", c, m->classes);
    cJSON *root = cJSON_CreateObject();
    if (!root || !fill_json(root, m, class_names)) {
        cJSON_Delete(root);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "metrics: no memory for the JSON report");
    }
    *out = root;
    return KELP_OK;
}
