/* kelp eval: top-1, top-5, per-class precision/recall, confusion matrix of a checkpoint on a dataset split. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/classifier.h"
#include "engine/metrics.h"
#include "tools/cli.h"

static void eval_help(void)
{
    puts("Usage: kelp eval --checkpoint CKPT --data DATA.h5 [--split test|val|train] [--json] [--batch N]\n"
         "                 [--threads N] [--loader-threads N] [--device cpu|cuda[:N]]\n"
         "\n"
         "Prints top-1 and top-5 accuracy, per-class precision, recall, F1 and support, and the confusion matrix\n"
         "(rows: true class, columns: predicted). --json prints one JSON object instead.");
}

static void print_report(const kelp_classifier *c, const kelp_metrics *m, const char *split)
{
    int k = kelp_classifier_classes(c);
    printf("%s split: %lld images, top-1 %.2f%%, top-%d %.2f%%\n\n", split, (long long)kelp_metrics_samples(m),
           100 * kelp_metrics_top1(m), kelp_metrics_top_k(m), 100 * kelp_metrics_top5(m));
    printf("%-24s %9s %9s %9s %9s\n", "class", "precision", "recall", "f1", "support");
    for (int i = 0; i < k; i++) {
        kelp_class_metrics cm;
        if (kelp_metrics_class(m, i, &cm) != KELP_OK)
            continue;
        printf("%-24.24s %9.4f %9.4f %9.4f %9lld\n", kelp_classifier_class_name(c, i), cm.precision, cm.recall, cm.f1,
               (long long)cm.support);
    }
    if (k > 30) {
        puts("\n(confusion matrix: use --json for more than 30 classes)");
        return;
    }
    printf("\nconfusion matrix (rows: true, columns: predicted)\n%8s", "");
    for (int j = 0; j < k; j++)
        printf(" %6d", j);
    printf("\n");
    const int64_t *cm = kelp_metrics_confusion(m);
    for (int i = 0; i < k; i++) {
        printf("%6d  ", i);
        for (int j = 0; j < k; j++)
            printf(" %6lld", (long long)cm[(size_t)i * k + j]);
        printf("  %s\n", kelp_classifier_class_name(c, i));
    }
}

int cmd_eval(int argc, char **argv)
{
    static const struct option options[] = {{"checkpoint", required_argument, 0, 'c'},
                                            {"data", required_argument, 0, 'd'},
                                            {"split", required_argument, 0, 's'},
                                            {"json", no_argument, 0, 'j'},
                                            {"batch", required_argument, 0, 'b'},
                                            {"threads", required_argument, 0, 't'},
                                            {"device", required_argument, 0, 'D'},
                                            {"loader-threads", required_argument, 0, 'l'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    const char *checkpoint = NULL, *data = NULL, *split_name = "test", *device = "cpu";
    bool json = false;
    int batch = 64, threads = 0, loader_threads = 1, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'c': checkpoint = optarg; break;
        case 'd': data = optarg; break;
        case 's': split_name = optarg; break;
        case 'j': json = true; break;
        case 'D': device = optarg; break;
        case 'b':
            if (cli_parse_int(optarg, 1, 4096, &batch) != 0)
                return cli_usage_error("eval", "--batch needs an integer in [1, 4096], got '%s'", optarg);
            break;
        case 't':
            if (cli_parse_int(optarg, 0, 1024, &threads) != 0)
                return cli_usage_error("eval", "--threads needs an integer, got '%s'", optarg);
            break;
        case 'l':
            if (cli_parse_int(optarg, 1, 256, &loader_threads) != 0)
                return cli_usage_error("eval", "--loader-threads needs an integer, got '%s'", optarg);
            break;
        case 'h': eval_help(); return 0;
        default: return cli_usage_error("eval", "bad option");
        }
    }
    if (!checkpoint || !data || optind != argc)
        return cli_usage_error("eval", "--checkpoint and --data are required");
    kelp_split split;
    if (kelp_split_parse(split_name, &split) != KELP_OK)
        return cli_usage_error("eval", "--split must be train, val or test, got '%s'", split_name);

    kelp_ctx_options co = kelp_ctx_defaults();
    co.threads = threads;
    co.device = device;
    kelp_ctx *ctx = NULL;
    kelp_classifier *c = NULL;
    kelp_dataset *ds = NULL;
    kelp_metrics *m = NULL;
    kelp_status s = kelp_ctx_create(&co, &ctx);
    if (s == KELP_OK)
        s = kelp_classifier_load(ctx, checkpoint, batch, &c);
    if (s == KELP_OK)
        s = kelp_dataset_open(data, &ds);
    if (s == KELP_OK)
        s = kelp_metrics_create(kelp_classifier_classes(c), -100, &m);
    if (s == KELP_OK)
        s = kelp_classifier_evaluate(c, ds, split, loader_threads, m, NULL, NULL);
    int rc = 0;
    if (s != KELP_OK) {
        rc = cli_fail(s, "eval");
    } else if (json) {
        cJSON *out = NULL;
        s = kelp_metrics_to_json(m, kelp_classifier_class_names(c), &out);
        if (s == KELP_OK) {
            cJSON_AddStringToObject(out, "checkpoint", checkpoint);
            cJSON_AddStringToObject(out, "data", data);
            cJSON_AddStringToObject(out, "split", split_name);
            char *text = cJSON_Print(out);
            puts(text ? text : "{}");
            free(text);
            cJSON_Delete(out);
        } else {
            rc = cli_fail(s, "eval");
        }
    } else {
        print_report(c, m, split_name);
    }
    kelp_metrics_destroy(m);
    kelp_dataset_close(ds);
    kelp_classifier_destroy(c);
    kelp_ctx_destroy(ctx);
    return rc;
}
