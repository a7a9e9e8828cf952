/* kelp report: one self-contained HTML page about a training run (curves, confusion matrix, mistakes). */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/checkpoint.h"
#include "engine/classifier.h"
#include "engine/metrics.h"
#include "engine/report.h"
#include "io/image.h"
#include "tools/cli.h"

static void report_help(void)
{
    puts("Usage: kelp report RUN_DIR [--out FILE] [--data DATA.h5] [--split val|test] [--max-mistakes N]\n"
         "                   [--threads N]\n"
         "\n"
         "Writes one self-contained HTML file (default RUN_DIR/report.html): the run's loss, accuracy and learning\n"
         "rate curves from metrics.jsonl, and the confusion matrix and misclassified images of best.ckpt on the\n"
         "validation split (the test split when there is none). The dataset is the one the run trained on unless\n"
         "--data names another.");
}

typedef struct report_args {
    const char *run_dir, *out, *data, *split;
    int max_mistakes, threads;
} report_args;

/* Mistakes are collected during evaluation (index, labels, confidence) and their pixels read afterwards. */
typedef struct mistake_list {
    kelp_report_mistake *items;
    int count, max;
    int classes;
} mistake_list;

static void collect_mistake(void *user, int64_t index, int label, const float *probabilities)
{
    mistake_list *l = user;
    int predicted = 0;
    kelp_top_k(probabilities, l->classes, 1, &predicted);
    if (predicted == label || l->count >= l->max)
        return;
    l->items[l->count++] = (kelp_report_mistake){
        .index = index, .label = label, .predicted = predicted, .confidence = probabilities[predicted]};
}

static kelp_status encode_mistake(kelp_dataset *ds, kelp_split split, kelp_report_mistake *m)
{
    kelp_image_shape shape;
    KELP_TRY(kelp_dataset_image_shape(ds, split, m->index, &shape));
    size_t bytes = (size_t)shape.h * shape.w * shape.c;
    uint8_t *pixels = malloc(bytes ? bytes : 1);
    if (!pixels)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory reading image %lld", (long long)m->index);
    uint8_t *png = NULL;
    size_t size = 0;
    kelp_status s = kelp_dataset_read_image(ds, split, m->index, pixels, bytes);
    if (s == KELP_OK)
        s = kelp_image_encode_png(pixels, shape.h, shape.w, shape.c, &png, &size);
    free(pixels);
    m->png = png;
    m->png_size = size;
    return s;
}

static void free_mistakes(mistake_list *l)
{
    for (int i = 0; l->items && i < l->count; i++)
        free((void *)l->items[i].png);
    free(l->items);
}

/* The run's options: the model name and the dataset it trained on. */
static kelp_status read_run_config(const char *checkpoint, cJSON **config)
{
    char *model = NULL, *text = NULL;
    kelp_status s = kelp_checkpoint_model(checkpoint, &model, &text);
    free(model);
    if (s != KELP_OK)
        return s;
    *config = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!cJSON_IsObject(*config)) {
        cJSON_Delete(*config);
        *config = NULL;
        return kelp_set_error(KELP_ERR_FORMAT, "%s: the checkpoint's kelp.config is missing or not a JSON object",
                              checkpoint);
    }
    return KELP_OK;
}

static kelp_status pick_split(const report_args *a, kelp_dataset *ds, kelp_split *split)
{
    if (a->split)
        KELP_TRY(kelp_split_parse(a->split, split));
    else
        *split = kelp_dataset_count(ds, KELP_SPLIT_VAL) > 0 ? KELP_SPLIT_VAL : KELP_SPLIT_TEST;
    if (kelp_dataset_count(ds, *split) == 0)
        return kelp_set_error(KELP_ERR_NOT_FOUND, "%s: the dataset has no %s split", kelp_dataset_path(ds),
                              kelp_split_name(*split));
    return KELP_OK;
}

typedef struct report_state {
    kelp_run_metrics metrics;
    cJSON *config;
    kelp_ctx *ctx;
    kelp_classifier *classifier;
    kelp_dataset *dataset;
    kelp_metrics *confusion;
    mistake_list mistakes;
    kelp_split split;
} report_state;

static kelp_status evaluate(report_state *st, const report_args *a, const char *checkpoint)
{
    const char *data = a->data;
    if (!data)
        data = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st->config, "data"));
    if (!data)
        return kelp_set_error(KELP_ERR_FORMAT, "%s: the run config names no dataset; use --data", checkpoint);
    kelp_ctx_options co = kelp_ctx_defaults();
    co.threads = a->threads;
    KELP_TRY(kelp_ctx_create(&co, &st->ctx));
    KELP_TRY(kelp_classifier_load(st->ctx, checkpoint, 64, &st->classifier));
    KELP_TRY(kelp_dataset_open(data, &st->dataset));
    KELP_TRY(pick_split(a, st->dataset, &st->split));
    int classes = kelp_classifier_classes(st->classifier);
    KELP_TRY(kelp_metrics_create(classes, -100, &st->confusion));
    st->mistakes = (mistake_list){.max = a->max_mistakes, .classes = classes};
    st->mistakes.items = calloc((size_t)(a->max_mistakes > 0 ? a->max_mistakes : 1), sizeof(kelp_report_mistake));
    if (!st->mistakes.items)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory for the mistake list");
    KELP_TRY(kelp_classifier_evaluate(st->classifier, st->dataset, st->split, 1, st->confusion, collect_mistake,
                                      &st->mistakes));
    for (int i = 0; i < st->mistakes.count; i++)
        KELP_TRY(encode_mistake(st->dataset, st->split, &st->mistakes.items[i]));
    return KELP_OK;
}

static kelp_status write_report(report_state *st, const report_args *a, const char *out)
{
    char path[4096];
    struct stat info;
    if (stat(a->run_dir, &info) != 0 || !S_ISDIR(info.st_mode))
        return kelp_set_error(KELP_ERR_NOT_FOUND, "%s: no such run directory", a->run_dir);
    snprintf(path, sizeof path, "%s/metrics.jsonl", a->run_dir);
    KELP_TRY(kelp_run_metrics_read(path, &st->metrics));
    snprintf(path, sizeof path, "%s/best.ckpt", a->run_dir);
    KELP_TRY(read_run_config(path, &st->config));
    KELP_TRY(evaluate(st, a, path));
    kelp_report r = {
        .model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st->config, "model")),
        .dataset = kelp_dataset_path(st->dataset),
        .split = kelp_split_name(st->split),
        .class_names = kelp_classifier_class_names(st->classifier),
        .classes = kelp_classifier_classes(st->classifier),
        .run_metrics = &st->metrics,
        .confusion = kelp_metrics_confusion(st->confusion),
        .samples = kelp_metrics_samples(st->confusion),
        .top1 = kelp_metrics_top1(st->confusion),
        .mistakes = st->mistakes.items,
        .mistake_count = st->mistakes.count,
    };
    return kelp_report_write_html(out, &r);
}

static void report_state_free(report_state *st)
{
    free_mistakes(&st->mistakes);
    kelp_metrics_destroy(st->confusion);
    kelp_dataset_close(st->dataset);
    kelp_classifier_destroy(st->classifier);
    kelp_ctx_destroy(st->ctx);
    cJSON_Delete(st->config);
    kelp_run_metrics_free(&st->metrics);
}

static int parse_args(int argc, char **argv, report_args *a)
{
    static const struct option options[] = {{"out", required_argument, 0, 'o'},
                                            {"data", required_argument, 0, 'd'},
                                            {"split", required_argument, 0, 's'},
                                            {"max-mistakes", required_argument, 0, 'm'},
                                            {"threads", required_argument, 0, 't'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "o:", options, NULL)) != -1) {
        switch (opt) {
        case 'o': a->out = optarg; break;
        case 'd': a->data = optarg; break;
        case 's':
            if (strcmp(optarg, "val") != 0 && strcmp(optarg, "test") != 0)
                return cli_usage_error("report", "--split must be val or test, got '%s'", optarg);
            a->split = optarg;
            break;
        case 'm':
            if (cli_parse_int(optarg, 0, 10000, &a->max_mistakes) != 0)
                return cli_usage_error("report", "--max-mistakes needs an integer in [0, 10000], got '%s'", optarg);
            break;
        case 't':
            if (cli_parse_int(optarg, 0, 1024, &a->threads) != 0)
                return cli_usage_error("report", "--threads needs an integer, got '%s'", optarg);
            break;
        case 'h': report_help(); return -1;
        default: return cli_usage_error("report", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("report", "needs exactly one RUN_DIR");
    a->run_dir = argv[optind];
    return 0;
}

int cmd_report(int argc, char **argv)
{
    report_args a = {.max_mistakes = 24};
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    char out[4096];
    if (a.out)
        snprintf(out, sizeof out, "%s", a.out);
    else
        snprintf(out, sizeof out, "%s/report.html", a.run_dir);
    report_state st = {0};
    kelp_status s = write_report(&st, &a, out);
    report_state_free(&st);
    if (s != KELP_OK)
        return cli_fail(s, NULL);
    printf("wrote %s\n", out);
    return 0;
}
