/* The training report behind `kelp report`: a run's metrics.jsonl read back, and ONE self-contained HTML file
 * (inline SVG charts, a confusion-matrix heat map, misclassified images as data: URIs) that opens anywhere without
 * a server or network access.
 *
 *   kelp_run_metrics m;
 *   KELP_TRY(kelp_run_metrics_read("run/metrics.jsonl", &m));
 *   kelp_report r = {.run_metrics = &m, ...};
 *   KELP_TRY(kelp_report_write_html("run/report.html", &r));
 *   kelp_run_metrics_free(&m);
 */
#ifndef KELP_ENGINE_REPORT_H
#define KELP_ENGINE_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kelp/status.h"

typedef struct kelp_epoch_record {
    int64_t epoch;
    double loss, accuracy;         /* training */
    double val_loss, val_accuracy; /* -1 without a validation split */
    bool best;
} kelp_epoch_record;

typedef struct kelp_step_record {
    int64_t step;
    double lr;
} kelp_step_record;

typedef struct kelp_run_metrics {
    kelp_epoch_record *epochs;
    int64_t epoch_count;
    kelp_step_record *steps;
    int64_t step_count;
} kelp_run_metrics;

/* Reads every line of a metrics.jsonl; a line that is not a step or epoch object with finite numbers is an error
 * naming the file and the line. */
kelp_status kelp_run_metrics_read(const char *path, kelp_run_metrics *out);
void kelp_run_metrics_free(kelp_run_metrics *m);

typedef struct kelp_report_mistake {
    int64_t index; /* in the split */
    int label, predicted;
    double confidence; /* the predicted class's probability */
    const uint8_t *png;
    size_t png_size;
} kelp_report_mistake;

typedef struct kelp_report {
    const char *model, *dataset, *split; /* shown as given (escaped) */
    const char *const *class_names;
    int classes;
    const kelp_run_metrics *run_metrics;
    const int64_t *confusion; /* (classes, classes): rows true, columns predicted */
    int64_t samples;
    double top1;
    const kelp_report_mistake *mistakes;
    int mistake_count;
} kelp_report;

/* Writes the report atomically (io/atomic_file.h). */
kelp_status kelp_report_write_html(const char *path, const kelp_report *report);

/* Standard base64 (RFC 4648, padded) of `size` bytes into `out`, which holds kelp_base64_size(size) bytes including
 * the terminating NUL. */
size_t kelp_base64_size(size_t size);
void kelp_base64_encode(const uint8_t *data, size_t size, char *out);

#endif
