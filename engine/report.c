/* The HTML training report: metrics.jsonl parsing, hand-written SVG charts, the confusion heat map and the mistake
 * grid. Everything goes into one file so that a report can be mailed or archived next to its run. */
#include "engine/report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic_file.h"
#include "io/text_file.h"

/* A metrics.jsonl of a very long run stays far below this; anything larger is a wrong path. */
#define METRICS_MAX_BYTES ((size_t)1 << 30)

/* ---- metrics.jsonl ---- */

static bool json_number(const cJSON *obj, const char *key, double *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
        return false;
    *out = item->valuedouble;
    return true;
}

static kelp_status grow(void **items, int64_t count, int64_t *capacity, size_t item_size)
{
    if (count < *capacity)
        return KELP_OK;
    int64_t next = *capacity ? 2 * *capacity : 64;
    void *p = realloc(*items, (size_t)next * item_size);
    if (!p)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory reading metrics");
    *items = p;
    *capacity = next;
    return KELP_OK;
}

typedef struct metrics_builder {
    kelp_run_metrics *m;
    int64_t epoch_capacity, step_capacity;
} metrics_builder;

static kelp_status add_epoch(metrics_builder *b, const cJSON *line)
{
    kelp_epoch_record e = {0};
    double epoch = 0;
    const cJSON *best = cJSON_GetObjectItemCaseSensitive(line, "best");
    if (!json_number(line, "epoch", &epoch) || !json_number(line, "loss", &e.loss) ||
        !json_number(line, "accuracy", &e.accuracy) || !json_number(line, "val_loss", &e.val_loss) ||
        !json_number(line, "val_accuracy", &e.val_accuracy) || !cJSON_IsBool(best))
        return kelp_set_error(KELP_ERR_FORMAT,
                              "an epoch line lacks a finite epoch, loss, accuracy, val_loss, val_accuracy or best");
    e.epoch = (int64_t)epoch;
    e.best = cJSON_IsTrue(best);
    KELP_TRY(grow((void **)&b->m->epochs, b->m->epoch_count, &b->epoch_capacity, sizeof e));
    b->m->epochs[b->m->epoch_count++] = e;
    return KELP_OK;
}

static kelp_status add_step(metrics_builder *b, const cJSON *line)
{
    kelp_step_record s = {0};
    double step = 0;
    if (!json_number(line, "step", &step) || !json_number(line, "lr", &s.lr))
        return kelp_set_error(KELP_ERR_FORMAT, "a step line lacks a finite step or lr");
    s.step = (int64_t)step;
    KELP_TRY(grow((void **)&b->m->steps, b->m->step_count, &b->step_capacity, sizeof s));
    b->m->steps[b->m->step_count++] = s;
    return KELP_OK;
}

static kelp_status add_line(metrics_builder *b, const char *text)
{
    cJSON *line = cJSON_Parse(text);
    if (!cJSON_IsObject(line)) {
        cJSON_Delete(line);
        return kelp_set_error(KELP_ERR_FORMAT, "not a JSON object");
    }
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(line, "type"));
    kelp_status s;
    if (type && strcmp(type, "epoch") == 0)
        s = add_epoch(b, line);
    else if (type && strcmp(type, "step") == 0)
        s = add_step(b, line);
    else
        s = kelp_set_error(KELP_ERR_FORMAT, "\"type\" is neither \"step\" nor \"epoch\"");
    cJSON_Delete(line);
    return s;
}

static kelp_status parse_lines(metrics_builder *b, char *text, const char *path)
{
    int64_t number = 0;
    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        number++;
        if (line[strspn(line, " \t\r")] != '\0') {
            kelp_status s = add_line(b, line);
            if (s != KELP_OK)
                return kelp_wrap_error(s, "%s: line %lld: ", path, (long long)number);
        }
        line = end ? end + 1 : NULL;
    }
    if (b->m->epoch_count == 0)
        return kelp_set_error(KELP_ERR_FORMAT, "%s: no epoch line (was the run stopped before its first epoch?)",
                              path);
    return KELP_OK;
}

kelp_status kelp_run_metrics_read(const char *path, kelp_run_metrics *out)
{
    if (!path || !out)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_run_metrics_read: NULL argument");
    memset(out, 0, sizeof *out);
    char *text = NULL;
    KELP_TRY(kelp_read_text_file(path, METRICS_MAX_BYTES, &text));
    metrics_builder b = {.m = out};
    kelp_status s = parse_lines(&b, text, path);
    free(text);
    if (s != KELP_OK)
        kelp_run_metrics_free(out);
    return s;
}

void kelp_run_metrics_free(kelp_run_metrics *m)
{
    if (!m)
        return;
    free(m->epochs);
    free(m->steps);
    memset(m, 0, sizeof *m);
}

/* ---- base64 ---- */

size_t kelp_base64_size(size_t size)
{
    return (size + 2) / 3 * 4 + 1;
}

void kelp_base64_encode(const uint8_t *data, size_t size, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < size; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < size)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < size)
            v |= data[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < size ? alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < size ? alphabet[v & 63] : '=';
    }
    out[o] = '\0';
}

/* ---- HTML ---- */

static void put_escaped(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void put_class(FILE *f, const kelp_report *r, int index)
{
    if (index >= 0 && index < r->classes && r->class_names && r->class_names[index])
        put_escaped(f, r->class_names[index]);
    else
        fprintf(f, "%d", index);
}

/* ---- SVG line charts ---- */

typedef struct series {
    const char *name, *color;
    const double *x, *y;
    int64_t n;
} series;

enum { CHART_W = 560, CHART_H = 300, PLOT_L = 64, PLOT_R = 20, PLOT_T = 34, PLOT_B = 48, TICKS = 5 };

typedef struct chart_range {
    double x0, x1, y0, y1;
} chart_range;

static chart_range chart_bounds(const series *s, int count)
{
    chart_range r = {INFINITY, -INFINITY, INFINITY, -INFINITY};
    for (int k = 0; k < count; k++)
        for (int64_t i = 0; i < s[k].n; i++) {
            r.x0 = fmin(r.x0, s[k].x[i]);
            r.x1 = fmax(r.x1, s[k].x[i]);
            r.y0 = fmin(r.y0, s[k].y[i]);
            r.y1 = fmax(r.y1, s[k].y[i]);
        }
    if (!(r.x0 <= r.x1))
        r = (chart_range){0, 1, 0, 1};
    /* a flat or single-point series still needs a span to map onto the plot */
    if (r.x1 - r.x0 < 1e-12)
        r.x1 = r.x0 + 1;
    if (r.y1 - r.y0 < 1e-12 * fmax(1, fabs(r.y0))) {
        r.y0 -= fmax(0.5, fabs(r.y0) * 0.1);
        r.y1 += fmax(0.5, fabs(r.y1) * 0.1);
    }
    return r;
}

static double px(const chart_range *r, double x)
{
    return PLOT_L + (x - r->x0) / (r->x1 - r->x0) * (CHART_W - PLOT_L - PLOT_R);
}

static double py(const chart_range *r, double y)
{
    return CHART_H - PLOT_B - (y - r->y0) / (r->y1 - r->y0) * (CHART_H - PLOT_T - PLOT_B);
}

static void chart_axes(FILE *f, const chart_range *r, const char *x_label, const char *y_label)
{
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", PLOT_L, CHART_H - PLOT_B,
            CHART_W - PLOT_R, CHART_H - PLOT_B);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>\n", PLOT_L, PLOT_T, PLOT_L,
            CHART_H - PLOT_B);
    for (int t = 0; t <= TICKS; t++) {
        double xv = r->x0 + (r->x1 - r->x0) * t / TICKS, yv = r->y0 + (r->y1 - r->y0) * t / TICKS;
        double x = px(r, xv), y = py(r, yv);
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#333\"/>"
                "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.4g</text>\n",
                x, CHART_H - PLOT_B, x, CHART_H - PLOT_B + 5, x, CHART_H - PLOT_B + 18, xv);
        fprintf(f,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#333\"/>"
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eee\"/>"
                "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n",
                PLOT_L - 5, y, PLOT_L, y, PLOT_L + 1, y, CHART_W - PLOT_R, y, PLOT_L - 8, y + 4, yv);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", (CHART_W + PLOT_L - PLOT_R) / 2,
            CHART_H - 10, x_label);
    fprintf(f, "<text x=\"14\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 14 %d)\">%s</text>\n",
            (CHART_H - PLOT_B + PLOT_T) / 2, (CHART_H - PLOT_B + PLOT_T) / 2, y_label);
}

static void chart_series(FILE *f, const chart_range *r, const series *s, int slot)
{
    if (s->n > 0) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", s->color);
        for (int64_t i = 0; i < s->n; i++)
            fprintf(f, "%s%.1f,%.1f", i ? " " : "", px(r, s->x[i]), py(r, s->y[i]));
        fputs("\"/>\n", f);
        /* single points (one epoch) would be invisible as a polyline */
        for (int64_t i = 0; i < s->n && s->n <= 50; i++)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", px(r, s->x[i]), py(r, s->y[i]),
                    s->color);
    }
    /* legend entries line up from the right edge, one slot each */
    int x = CHART_W - PLOT_R - 90 * (slot + 1);
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"4\" fill=\"%s\"/>"
            "<text x=\"%d\" y=\"%d\">%s</text>\n",
            x, PLOT_T - 14, s->color, x + 18, PLOT_T - 10, s->name);
}

static void chart(FILE *f, const char *title, const char *x_label, const char *y_label, const series *s, int count)
{
    chart_range r = chart_bounds(s, count);
    fprintf(f,
            "<figure><svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-size=\"11\" font-family=\"sans-serif\">\n"
            "<text x=\"%d\" y=\"14\" font-size=\"13\" font-weight=\"bold\">%s</text>\n",
            CHART_W, CHART_H, CHART_W, CHART_H, PLOT_L, title);
    chart_axes(f, &r, x_label, y_label);
    for (int k = 0; k < count; k++)
        chart_series(f, &r, &s[k], count - 1 - k);
    fputs("</svg></figure>\n", f);
}

static kelp_status write_lr_chart(FILE *f, const kelp_run_metrics *m)
{
    size_t n = (size_t)(m->step_count > 0 ? m->step_count : 1);
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    if (!x || !y) {
        free(x);
        free(y);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory building the learning-rate chart");
    }
    for (int64_t i = 0; i < m->step_count; i++) {
        x[i] = (double)m->steps[i].step;
        y[i] = m->steps[i].lr;
    }
    series lr = {"lr", "#2ca02c", x, y, m->step_count};
    chart(f, "Learning rate per logged step", "step", "learning rate", &lr, 1);
    free(x);
    free(y);
    return KELP_OK;
}

typedef struct epoch_columns {
    double *x, *loss, *accuracy, *val_x, *val_loss, *val_accuracy;
    int64_t n, val_n;
} epoch_columns;

static void free_columns(epoch_columns *c)
{
    free(c->x);
    free(c->loss);
    free(c->accuracy);
    free(c->val_x);
    free(c->val_loss);
    free(c->val_accuracy);
}

/* Epochs are shown from 1, as people count them; runs without validation have no validation series. */
static kelp_status epoch_columns_make(const kelp_run_metrics *m, epoch_columns *c)
{
    size_t bytes = (size_t)(m->epoch_count > 0 ? m->epoch_count : 1) * sizeof(double);
    double **columns[] = {&c->x, &c->loss, &c->accuracy, &c->val_x, &c->val_loss, &c->val_accuracy};
    for (size_t i = 0; i < sizeof columns / sizeof columns[0]; i++)
        if (!(*columns[i] = malloc(bytes)))
            return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory building the report's charts");
    for (int64_t i = 0; i < m->epoch_count; i++) {
        const kelp_epoch_record *e = &m->epochs[i];
        c->x[c->n] = (double)(e->epoch + 1);
        c->loss[c->n] = e->loss;
        c->accuracy[c->n++] = 100 * e->accuracy;
        if (e->val_accuracy >= 0) {
            c->val_x[c->val_n] = (double)(e->epoch + 1);
            c->val_loss[c->val_n] = e->val_loss;
            c->val_accuracy[c->val_n++] = 100 * e->val_accuracy;
        }
    }
    return KELP_OK;
}

static kelp_status write_charts(FILE *f, const kelp_run_metrics *m)
{
    epoch_columns c = {0};
    kelp_status s = epoch_columns_make(m, &c);
    if (s == KELP_OK) {
        fputs("<h2>Training curves</h2>\n<div class=\"charts\">\n", f);
        series loss[] = {{"train", "#1f77b4", c.x, c.loss, c.n}, {"val", "#ff7f0e", c.val_x, c.val_loss, c.val_n}};
        chart(f, "Loss per epoch", "epoch", "loss", loss, c.val_n ? 2 : 1);
        series acc[] = {{"train", "#1f77b4", c.x, c.accuracy, c.n},
                        {"val", "#ff7f0e", c.val_x, c.val_accuracy, c.val_n}};
        chart(f, "Top-1 accuracy per epoch (%)", "epoch", "accuracy %", acc, c.val_n ? 2 : 1);
        s = write_lr_chart(f, m);
        fputs("</div>\n", f);
    }
    free_columns(&c);
    return s;
}

/* ---- header, confusion heat map, mistakes ---- */

static const kelp_epoch_record *best_epoch(const kelp_run_metrics *m)
{
    const kelp_epoch_record *best = NULL;
    for (int64_t i = 0; i < m->epoch_count; i++)
        if (m->epochs[i].best)
            best = &m->epochs[i];
    return best;
}

static void write_header(FILE *f, const kelp_report *r)
{
    fputs("<h1>kelp training report</h1>\n<table class=\"facts\">\n<tr><th>model</th><td>", f);
    put_escaped(f, r->model);
    fputs("</td></tr>\n<tr><th>dataset</th><td>", f);
    put_escaped(f, r->dataset);
    fprintf(f, "</td></tr>\n<tr><th>classes</th><td>%d: ", r->classes);
    for (int i = 0; i < r->classes; i++) {
        fputs(i ? ", " : "", f);
        put_class(f, r, i);
    }
    const kelp_run_metrics *m = r->run_metrics;
    int64_t trained = m->epoch_count ? m->epochs[m->epoch_count - 1].epoch + 1 : 0;
    fprintf(f, "</td></tr>\n<tr><th>epochs trained</th><td>%lld</td></tr>\n", (long long)trained);
    const kelp_epoch_record *best = best_epoch(m);
    if (best)
        fprintf(f, "<tr><th>best epoch</th><td>%lld (validation top-1 %.2f%%)</td></tr>\n",
                (long long)best->epoch + 1, 100 * best->val_accuracy);
    else
        fputs("<tr><th>best epoch</th><td>none (no validation split)</td></tr>\n", f);
    fputs("</table>\n", f);
}

static void write_confusion_row(FILE *f, const kelp_report *r, int row)
{
    const int64_t *counts = r->confusion + (size_t)row * (size_t)r->classes;
    int64_t total = 0;
    for (int j = 0; j < r->classes; j++)
        total += counts[j];
    fputs("<tr><th class=\"row\">", f);
    put_class(f, r, row);
    fputs("</th>", f);
    for (int j = 0; j < r->classes; j++) {
        double share = total ? (double)counts[j] / (double)total : 0;
        /* dark cells get light text so that the count stays readable */
        fprintf(f, "<td style=\"background:rgba(31,119,180,%.3f);color:%s\" title=\"%.1f%%\">%lld</td>", share,
                share > 0.5 ? "#fff" : "#000", 100 * share, (long long)counts[j]);
    }
    fputs("</tr>\n", f);
}

static void write_confusion(FILE *f, const kelp_report *r)
{
    fputs("<h2>Confusion matrix (", f);
    put_escaped(f, r->split);
    fprintf(f, " split, best checkpoint)</h2>\n<p>%lld images, top-1 %.2f%%. Rows: true class; columns: predicted "
               "class; shading: share of the row.</p>\n",
            (long long)r->samples, 100 * r->top1);
    fputs("<table class=\"confusion\">\n<thead><tr><th>true \\ predicted</th>", f);
    for (int j = 0; j < r->classes; j++) {
        fputs("<th>", f);
        put_class(f, r, j);
        fputs("</th>", f);
    }
    fputs("</tr></thead>\n<tbody>\n", f);
    for (int i = 0; i < r->classes; i++)
        write_confusion_row(f, r, i);
    fputs("</tbody></table>\n", f);
}

static kelp_status write_mistake(FILE *f, const kelp_report *r, const kelp_report_mistake *m)
{
    char *b64 = malloc(kelp_base64_size(m->png_size));
    if (!b64)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory encoding a report image");
    kelp_base64_encode(m->png, m->png_size, b64);
    fprintf(f, "<figure class=\"mistake\"><img src=\"data:image/png;base64,%s\" alt=\"image %lld\">"
               "<figcaption>#%lld<br>true: ",
            b64, (long long)m->index, (long long)m->index);
    free(b64);
    put_class(f, r, m->label);
    fputs("<br>predicted: ", f);
    put_class(f, r, m->predicted);
    fprintf(f, " (%.1f%%)</figcaption></figure>\n", 100 * m->confidence);
    return KELP_OK;
}

static kelp_status write_mistakes(FILE *f, const kelp_report *r)
{
    fprintf(f, "<h2>Misclassified images (%d shown)</h2>\n<div class=\"grid\">\n", r->mistake_count);
    for (int i = 0; i < r->mistake_count; i++)
        KELP_TRY(write_mistake(f, r, &r->mistakes[i]));
    fputs("</div>\n", f);
    return KELP_OK;
}

static const char STYLE[] =
    "body{font-family:sans-serif;margin:2em;color:#222}"
    "table.facts th{text-align:left;padding-right:1em}"
    ".charts{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}"
    "table.confusion{border-collapse:collapse;font-size:12px}"
    "table.confusion td,table.confusion th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
    ".grid{display:flex;flex-wrap:wrap;gap:10px}"
    ".mistake{width:120px;font-size:11px;text-align:center}"
    ".mistake img{width:96px;height:96px;image-rendering:pixelated;object-fit:contain}";

static kelp_status write_document(FILE *f, const kelp_report *r)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>kelp report: ", f);
    put_escaped(f, r->model);
    fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n", STYLE);
    write_header(f, r);
    KELP_TRY(write_charts(f, r->run_metrics));
    write_confusion(f, r);
    KELP_TRY(write_mistakes(f, r));
    fputs("</body>\n</html>\n", f);
    return KELP_OK;
}

static kelp_status check_report(const kelp_report *r)
{
    if (!r->run_metrics || r->classes < 1 || !r->confusion || r->mistake_count < 0 ||
        (r->mistake_count > 0 && !r->mistakes))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_report_write_html: incomplete report");
    for (int i = 0; i < r->mistake_count; i++)
        if (!r->mistakes[i].png && r->mistakes[i].png_size)
            return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_report_write_html: mistake %d has no image", i);
    return KELP_OK;
}

kelp_status kelp_report_write_html(const char *path, const kelp_report *report)
{
    if (!path || !report)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "kelp_report_write_html: NULL argument");
    KELP_TRY(check_report(report));
    kelp_atomic_file *file = NULL;
    KELP_TRY(kelp_atomic_open(path, &file));
    FILE *f = kelp_atomic_stream(file);
    kelp_status s = write_document(f, report);
    if (s == KELP_OK && ferror(f))
        s = kelp_set_error(KELP_ERR_IO, "%s: write failed", path);
    if (s != KELP_OK) {
        kelp_atomic_abort(file);
        return s;
    }
    return kelp_atomic_commit(file);
}
