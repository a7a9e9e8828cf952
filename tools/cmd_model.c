/* kelp model list | show | summary */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "tools/cli.h"

static void model_help(void)
{
    puts("Usage: kelp model list\n"
         "       kelp model show NAME|MODEL.json [--classes N] [--input HxWxC]\n"
         "       kelp model summary NAME|MODEL.json [--classes N] [--input HxWxC] [--batch N]\n"
         "\n"
         "list     the zoo models\n"
         "show     print the JSON model file of a zoo model (redirect it to a file to edit it)\n"
         "summary  build the model and print each node's output shape and parameters, and the planned memory");
}

static int list_models(void)
{
    for (const char *const *z = kelp_model_zoo_names(); *z; z++)
        printf("%-14s %s\n", *z, kelp_model_zoo_description(*z));
    return 0;
}

static int summary(const char *source, const char *json, int batch)
{
    kelp_ctx *ctx;
    kelp_status s = kelp_ctx_create(NULL, &ctx);
    if (s != KELP_OK)
        return cli_fail(s, "context");
    kelp_graph_options o = kelp_graph_defaults();
    o.batch = batch;
    o.training = true;
    kelp_graph *g;
    s = kelp_graph_build(ctx, json, &o, &g);
    if (s != KELP_OK) {
        kelp_ctx_destroy(ctx);
        return cli_fail(s, source);
    }
    printf("%-28s %-20s %-22s %12s\n", "node", "type", "output", "parameters");
    int64_t total = 0;
    for (int i = 0; i < kelp_graph_node_count(g); i++) {
        kelp_node_info info;
        kelp_graph_node_info(g, i, &info);
        char shape[96];
        printf("%-28s %-20s %-22s %12lld\n", info.name, info.type, kelp_shape_str(&info.output, shape, sizeof shape),
               (long long)info.parameters);
        total += info.parameters;
    }
    kelp_graph_memory m;
    kelp_graph_memory_usage(g, &m);
    const double mib = 1024.0 * 1024.0;
    printf("\ntrainable parameters: %lld (%.1f MiB)\n", (long long)total, m.params / mib);
    printf("training memory at batch %d: activations %.1f MiB (%.1f MiB without liveness planning), "
           "gradients %.1f MiB, workspace %.1f MiB\n",
           batch, m.activations / mib, m.activations_unplanned / mib, m.grads / mib, m.workspace / mib);
    kelp_graph_destroy(g);
    kelp_ctx_destroy(ctx);
    return 0;
}

int cmd_model(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        model_help();
        return argc < 2 ? CLI_EXIT_USAGE : 0;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "list") == 0)
        return list_models();
    if (strcmp(verb, "show") != 0 && strcmp(verb, "summary") != 0)
        return cli_usage_error("model", "unknown verb '%s' (expected list, show or summary)", verb);

    static const struct option options[] = {{"classes", required_argument, 0, 'c'},
                                            {"input", required_argument, 0, 'i'},
                                            {"batch", required_argument, 0, 'b'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    kelp_zoo_options zoo = {0};
    int batch = 1, opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            if (cli_parse_int(optarg, 1, 1 << 20, &zoo.num_classes) != 0)
                return cli_usage_error("model", "--classes needs a positive integer, got '%s'", optarg);
            break;
        case 'i':
            if (cli_parse_input_size(optarg, &zoo) != 0)
                return cli_usage_error("model", "--input needs HxWxC or HxW, got '%s'", optarg);
            break;
        case 'b':
            if (cli_parse_int(optarg, 1, 1 << 20, &batch) != 0)
                return cli_usage_error("model", "--batch needs a positive integer, got '%s'", optarg);
            break;
        case 'h':
            model_help();
            return 0;
        default:
            return cli_usage_error("model", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("model", "%s needs exactly one model name or file", verb);
    char *json;
    kelp_status s = cli_load_model_json(argv[optind], &zoo, &json);
    if (s != KELP_OK)
        return cli_fail(s, NULL);
    int rc = 0;
    if (strcmp(verb, "show") == 0)
        puts(json);
    else
        rc = summary(argv[optind], json, batch);
    kelp_free(json);
    return rc;
}
