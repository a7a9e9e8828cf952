/* kelp model list | show | summary | onnx */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/onnx_export.h"
#include "io/safetensors.h"
#include "tools/cli.h"

static void model_help(void)
{
    puts("Usage: kelp model list\n"
         "       kelp model show NAME|MODEL.json [--classes N] [--input HxWxC]\n"
         "       kelp model summary NAME|MODEL.json [--classes N] [--input HxWxC] [--batch N]\n"
         "       kelp model onnx NAME|MODEL.json --out FILE.onnx [--weights FILE.safetensors] [--classes N]\n"
         "                       [--input HxWxC] [--seed S] [--reference FILE.safetensors]\n"
         "\n"
         "list     the zoo models\n"
         "show     print the JSON model file of a zoo model (redirect it to a file to edit it)\n"
         "summary  build the model and print each node's output shape and parameters, and the planned memory\n"
         "onnx     export the model for inference as ONNX (IR 8, opset 17): NCHW input \"input\" [batch, C, H, W],\n"
         "         output \"logits\", parameters under their PyTorch names. --weights loads a weights file or a\n"
         "         checkpoint; without it the parameters are initialized randomly from --seed (default 1).\n"
         "         --reference also writes a safetensors file with a random NCHW input \"input\" (batch 2,\n"
         "         U(-1, 1) from the seed) and kelp's \"logits\" for it, to check the export against another\n"
         "         runtime (docs/model-format.md, \"ONNX export\")");
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

/* ---- kelp model onnx ---- */

typedef struct onnx_args {
    const char *model, *out, *weights, *reference;
    kelp_zoo_options zoo;
    uint64_t seed;
} onnx_args;

/* --classes ('c') and --input ('i'), which every verb that takes a model accepts: 0, or the usage error's exit code. */
static int apply_zoo_option(int opt, const char *value, kelp_zoo_options *zoo)
{
    if (opt == 'c' && cli_parse_int(value, 1, 1 << 20, &zoo->num_classes) != 0)
        return cli_usage_error("model", "--classes needs a positive integer, got '%s'", value);
    if (opt == 'i' && cli_parse_input_size(value, zoo) != 0)
        return cli_usage_error("model", "--input needs HxWxC or HxW, got '%s'", value);
    return 0;
}

static int parse_onnx_args(int argc, char **argv, onnx_args *a)
{
    static const struct option options[] = {{"out", required_argument, 0, 'o'},
                                            {"weights", required_argument, 0, 'w'},
                                            {"classes", required_argument, 0, 'c'},
                                            {"input", required_argument, 0, 'i'},
                                            {"seed", required_argument, 0, 's'},
                                            {"reference", required_argument, 0, 'r'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
        case 'o': a->out = optarg; break;
        case 'w': a->weights = optarg; break;
        case 'r': a->reference = optarg; break;
        case 'c':
        case 'i': {
            int rc = apply_zoo_option(opt, optarg, &a->zoo);
            if (rc)
                return rc;
            break;
        }
        case 's':
            if (cli_parse_u64(optarg, &a->seed) != 0)
                return cli_usage_error("model", "--seed needs a non-negative integer, got '%s'", optarg);
            break;
        case 'h': model_help(); return -1;
        default: return cli_usage_error("model", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("model", "onnx needs exactly one model name or file");
    if (!a->out)
        return cli_usage_error("model", "onnx needs --out FILE.onnx");
    a->model = argv[optind];
    return 0;
}

/* A host copy of `t` in ONNX's layout (NHWC -> NCHW for rank 4) as a safetensors record named `name`. */
static kelp_status onnx_layout_record(const kelp_tensor *t, const char *name, float **host, kelp_st_record *rec)
{
    const kelp_shape *s = &t->shape;
    size_t n = (size_t)kelp_shape_numel(s);
    float *nhwc = malloc(n * sizeof *nhwc), *out = malloc(n * sizeof *out);
    kelp_status st = nhwc && out ? kelp_tensor_download(t, nhwc, n * sizeof *nhwc)
                                 : kelp_set_error(KELP_ERR_NO_MEMORY, "reference: out of memory");
    if (st == KELP_OK && s->ndim == 4) {
        int64_t b = s->dims[0], h = s->dims[1], w = s->dims[2], c = s->dims[3];
        for (int64_t i = 0; i < b; i++)
            for (int64_t y = 0; y < h; y++)
                for (int64_t x = 0; x < w; x++)
                    for (int64_t k = 0; k < c; k++)
                        out[((i * c + k) * h + y) * w + x] = nhwc[((i * h + y) * w + x) * c + k];
        int64_t dims[4] = {b, c, h, w};
        *rec = (kelp_st_record){name, KELP_ST_F32, kelp_shape_make(4, dims), out};
    } else if (st == KELP_OK) {
        memcpy(out, nhwc, n * sizeof *out);
        *rec = (kelp_st_record){name, KELP_ST_F32, *s, out};
    }
    free(nhwc);
    if (st != KELP_OK) {
        free(out);
        out = NULL;
    }
    *host = out;
    return st;
}

/* The check an ONNX runtime can repeat: a random input (kelp_graph_fill_random, U(-1, 1) from the seed) and kelp's
 * outputs for it, in the exported graph's NCHW layout and names: "input", "logits" for output 0, and further
 * outputs under their own names. */
static kelp_status write_reference(kelp_graph *g, const char *model_json, const char *path, uint64_t seed)
{
    KELP_TRY(kelp_graph_fill_random(g, seed));
    KELP_TRY(kelp_graph_forward(g));
    int n_out = kelp_graph_output_count(g);
    kelp_st_record *records = calloc((size_t)n_out + 1, sizeof *records);
    float **host = calloc((size_t)n_out + 1, sizeof *host);
    kelp_status s = records && host ? KELP_OK : kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory", path);
    if (s == KELP_OK)
        s = onnx_layout_record(kelp_graph_input(g, 0), "input", &host[0], &records[0]);
    /* the model file names the outputs (the graph built from it, so it parses); output 0 is renamed as in the
     * ONNX file */
    cJSON *model = cJSON_Parse(model_json);
    const cJSON *outputs = cJSON_GetObjectItemCaseSensitive(model, "outputs");
    for (int k = 0; k < n_out && s == KELP_OK; k++) {
        const cJSON *name = cJSON_GetArrayItem(outputs, k);
        if (k > 0 && !cJSON_IsString(name)) {
            s = kelp_set_error(KELP_ERR_NO_MEMORY, "%s: out of memory reading the model's outputs", path);
            break;
        }
        s = onnx_layout_record(kelp_graph_output(g, k), k == 0 ? "logits" : name->valuestring, &host[k + 1],
                               &records[k + 1]);
    }
    const kelp_st_meta meta[] = {{"producer", "kelp " KELP_VERSION_STRING}, {"layout", "NCHW"}};
    if (s == KELP_OK)
        s = kelp_st_write(path, records, (size_t)n_out + 1, meta, 2);
    for (int k = 0; host && k <= n_out; k++)
        free(host[k]);
    free(host);
    free(records);
    cJSON_Delete(model);
    return s;
}

static kelp_status export_onnx(const onnx_args *a, const char *json)
{
    kelp_ctx_options co = kelp_ctx_defaults();
    co.seed = a->seed;
    kelp_ctx *ctx;
    KELP_TRY(kelp_ctx_create(&co, &ctx));
    kelp_graph_options o = kelp_graph_defaults();
    o.batch = 2; /* the reference's batch; the export itself has a symbolic batch */
    kelp_graph *g = NULL;
    kelp_status s = kelp_graph_build(ctx, json, &o, &g);
    if (s != KELP_OK)
        kelp_wrap_error(s, "%s: ", a->model);
    if (s == KELP_OK && a->weights)
        s = kelp_graph_load_weights(g, a->weights, KELP_LOAD_STRICT);
    if (s == KELP_OK)
        s = kelp_onnx_export(g, a->out, NULL);
    if (s == KELP_OK && a->reference)
        s = write_reference(g, json, a->reference, a->seed);
    kelp_graph_destroy(g);
    kelp_ctx_destroy(ctx);
    return s;
}

static int model_onnx(int argc, char **argv)
{
    onnx_args a = {.seed = 1};
    int rc = parse_onnx_args(argc, argv, &a);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    char *json;
    kelp_status s = cli_load_model_json(a.model, &a.zoo, &json);
    if (s != KELP_OK)
        return cli_fail(s, NULL);
    s = export_onnx(&a, json);
    kelp_free(json);
    if (s != KELP_OK)
        return cli_fail(s, NULL);
    printf("wrote %s\n", a.out);
    if (a.reference)
        printf("wrote %s\n", a.reference);
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
    if (strcmp(verb, "onnx") == 0)
        return model_onnx(argc, argv);
    if (strcmp(verb, "show") != 0 && strcmp(verb, "summary") != 0)
        return cli_usage_error("model", "unknown verb '%s' (expected list, show, summary or onnx)", verb);

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
        case 'i': {
            int rc = apply_zoo_option(opt, optarg, &zoo);
            if (rc)
                return rc;
            break;
        }
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
