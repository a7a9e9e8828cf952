/* kelp export: a checkpoint -> a module bundle the AI4OS / iMagine platform takes as it is (docs/bundle.md).
 *
 * The bundle is written into a temporary directory beside --out and renamed to --out at the end, so a failure
 * leaves nothing half-written and an existing directory is never touched. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/checkpoint.h"
#include "engine/classifier.h"
#include "engine/onnx_export.h"
#include "engine/trainer.h"
#include "io/atomic_file.h"
#include "io/path.h"
#include "io/text_file.h"
#include "kelp/predictor.h"
#include "tools/bundle_text.h"
#include "tools/cli.h"
#include "tools/embedded.h"

static void export_help(void)
{
    puts("Usage: kelp export --checkpoint CKPT --out BUNDLE_DIR [--onnx] [--data DATA.h5 [--split test]]\n"
         "                   [--metrics EVAL.json] [--name NAME] [--title TEXT] [--summary TEXT] [--author TEXT]\n"
         "                   [--license SPDX] [--version X.Y.Z] [--source-url URL] [--max-pixels N] [--lib libkelp.so]\n"
         "\n"
         "Writes a module bundle for the AI4OS / iMagine platform: ai4-metadata.yml, a DEEPaaS Python package\n"
         "(pyproject.toml, NAME/api.py, a ctypes binding), model/ (model.json, weights.safetensors, model.onnx with\n"
         "--onnx), lib/libkelp.so, a Dockerfile, a README model card, LICENSE, VERSION and tests/test_api.py.\n"
         "Serve it with `pip install -e BUNDLE_DIR && deepaas-run --model-name NAME`; use it locally with\n"
         "`kelp predict --bundle BUNDLE_DIR`. BUNDLE_DIR must not exist.\n"
         "\n"
         "  --data, --split   evaluate the model on a dataset split (default test) for the metadata and model card\n"
         "  --metrics FILE    or take the scores from `kelp eval --json` output\n"
         "  --name            the module and DEEPaaS model name (default: the checkpoint's model, e.g. small-resnet)\n"
         "  --max-pixels      the REST API refuses uploads declaring more pixels (default 25000000)\n"
         "  --lib             the libkelp.so to ship (default: the one built beside this kelp binary)");
}

/* ---- files ---- */


/* root/name into path[PATH_MAX] */
static kelp_status join(char *path, const char *root, const char *name)
{
    return kelp_path_join(path, PATH_MAX, root, name);
}

static kelp_status make_dir(const char *root, const char *sub)
{
    char path[PATH_MAX];
    KELP_TRY(join(path, root, sub));
    if (mkdir(path, 0777) != 0)
        return kelp_set_error(KELP_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    return KELP_OK;
}

static kelp_status write_file(const char *root, const char *name, const void *data, size_t size)
{
    char path[PATH_MAX];
    KELP_TRY(join(path, root, name));
    return kelp_atomic_write(path, data, size);
}

static kelp_status write_text(const char *root, const char *name, char *text)
{
    if (!text)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s/%s: out of memory", root, name);
    kelp_status s = write_file(root, name, text, strlen(text));
    free(text);
    return s;
}

/* The engine's shared library is a few MiB; the cap only keeps a wrong path from being read whole. */
static kelp_status copy_file(const char *from, const char *root, const char *name)
{
    char *data;
    size_t size;
    KELP_TRY(kelp_read_file(from, (size_t)1 << 30, &data, &size));
    kelp_status s = write_file(root, name, data, size);
    free(data);
    return s;
}

/* libkelp.so beside the running kelp (a build tree), or in ../lib (an installed prefix). */
static kelp_status find_library(char *out)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = 0;
        const char *candidates[] = {"libkelp.so", "../lib/libkelp.so"};
        for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
            char path[PATH_MAX + 32];
            snprintf(path, sizeof path, "%s/%s", exe, candidates[i]);
            if (realpath(path, out) && access(out, R_OK) == 0)
                return KELP_OK;
        }
    }
    return kelp_set_error(KELP_ERR_NOT_FOUND, "libkelp.so is not beside this kelp binary nor in ../lib; build the "
                                              "kelp_shared target or give --lib");
}

/* ---- what the bundle says about the model ---- */

static double file_mib(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (double)st.st_size / (1 << 20) : 0;
}

/* The bytes a graph's tensors take, planned by the engine. */
static double planned_bytes(const kelp_graph *g)
{
    kelp_graph_memory m;
    kelp_graph_memory_usage(g, &m);
    return (double)(m.params + m.grads + m.buffers + m.activations + m.workspace);
}

/* Memory the model's tensors take, in MiB: inference at batch 1 (the classifier's own graph); training at the
 * run's batch and precision, with the optimizer's state (one more float copy of the parameters for SGD momentum,
 * two for AdamW). */
static kelp_status measure_memory(kelp_ctx *ctx, const char *model, const kelp_graph *inference, int train_batch,
                                  const char *precision, bool adamw, double *infer_mib, double *train_mib)
{
    *infer_mib = planned_bytes(inference) / (1 << 20);
    kelp_graph_options o = kelp_graph_defaults();
    o.batch = train_batch;
    o.training = o.with_loss = true;
    KELP_TRY(kelp_precision_parse(precision, &o.precision));
    kelp_graph *g;
    KELP_TRY(kelp_graph_build(ctx, model, &o, &g));
    double state = (adamw ? 2.0 : 1.0) * (double)kelp_shape_numel(&kelp_graph_params(g)->shape) * sizeof(float);
    *train_mib = (planned_bytes(g) + state) / (1 << 20);
    kelp_graph_destroy(g);
    return KELP_OK;
}

static kelp_status read_metrics(const char *path, cJSON **out)
{
    char *text;
    KELP_TRY(kelp_read_text_file(path, 64 << 20, &text));
    *out = cJSON_Parse(text);
    free(text);
    const char *keys[] = {"top1", "top5", "samples"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!cJSON_IsNumber(cJSON_GetObjectItem(*out, keys[i]))) {
            cJSON_Delete(*out);
            *out = NULL;
            return kelp_set_error(KELP_ERR_FORMAT, "%s: not the output of `kelp eval --json` (no number '%s')", path,
                                  keys[i]);
        }
    return KELP_OK;
}

/* Everything but the final rename, into `root`. */
static kelp_status write_bundle(kelp_ctx *ctx, const char *checkpoint, const bundle_info *info, const char *library,
                                const char *data, kelp_split split, const char *metrics_file, bool onnx,
                                const char *root)
{
    KELP_TRY(make_dir(root, "model"));
    KELP_TRY(make_dir(root, "lib"));
    KELP_TRY(make_dir(root, "tests"));
    KELP_TRY(make_dir(root, info->package));
    char weights[PATH_MAX];
    KELP_TRY(join(weights, root, "model/weights.safetensors"));
    KELP_TRY(kelp_checkpoint_strip(ctx, checkpoint, weights));

    bundle_info b = *info;
    char *model = NULL, *config = NULL;
    KELP_TRY(kelp_checkpoint_model(weights, &model, &config));
    cJSON *model_json = cJSON_Parse(model);
    /* the run's batch and optimizer, read as the trainer reads them (its defaults where the run said nothing) */
    kelp_train_options defaults, run;
    kelp_train_options_defaults(&defaults);
    void *keep = NULL;
    kelp_status s = kelp_train_options_from_config(config, weights, &defaults, &run, &keep);
    free(config);
    kelp_classifier *c = NULL;
    cJSON *metrics = NULL;
    if (s == KELP_OK)
        s = kelp_classifier_load(ctx, weights, 1, &c);
    if (s == KELP_OK) {
        b.classes = kelp_classifier_class_names(c);
        b.class_count = kelp_classifier_classes(c);
        kelp_classifier_input(c, &b.input_h, &b.input_w, &b.input_c);
        b.train_batch = run.batch;
        s = measure_memory(ctx, model, kelp_classifier_graph(c), b.train_batch, run.precision,
                           strcmp(run.optimizer, "adamw") == 0, &b.infer_mib, &b.train_mib);
    }
    if (s == KELP_OK && data)
        s = kelp_classifier_evaluate_file(ctx, weights, data, split, 32, &metrics);
    else if (s == KELP_OK && metrics_file)
        s = read_metrics(metrics_file, &metrics);
    if (s == KELP_OK && metrics) {
        b.metrics = metrics;
        /* `kelp eval --json` names the dataset it scored */
        const char *scored = cJSON_GetStringValue(cJSON_GetObjectItem(metrics, "data"));
        b.metrics_source = data ? data : scored ? scored : metrics_file;
    }
    char onnx_path[PATH_MAX];
    if (s == KELP_OK && onnx && (s = join(onnx_path, root, "model/model.onnx")) == KELP_OK)
        s = kelp_onnx_export(kelp_classifier_graph(c), onnx_path, NULL);
    if (s == KELP_OK) {
        char *pretty = cJSON_Print(model_json);
        s = write_text(root, "model/model.json", pretty);
    }
    if (s == KELP_OK)
        s = copy_file(library, root, "lib/libkelp.so");
    if (s == KELP_OK) {
        b.weights_mib = file_mib(weights);
        b.storage_mib = b.weights_mib + file_mib(library) + (onnx ? file_mib(onnx_path) : 0);
        s = bundle_write_texts(&b, root);
    }
    /* the templates: package/ becomes the module's Python package */
    for (const kelp_embedded_file *f = kelp_bundle_files; s == KELP_OK && f->path; f++) {
        char name[PATH_MAX];
        bool in_package = strncmp(f->path, "package/", 8) == 0;
        s = in_package ? join(name, b.package, f->path + 8) : KELP_OK;
        if (s == KELP_OK)
            s = write_file(root, in_package ? name : f->path, f->data, f->size);
    }
    free(model);
    cJSON_Delete(model_json);
    kelp_train_config_free(keep);
    cJSON_Delete(metrics);
    kelp_classifier_destroy(c);
    return s;
}

/* `out` must not exist, and its parent must be a directory: said about `out`, before any work. */
static kelp_status check_out(const char *out)
{
    struct stat st;
    if (lstat(out, &st) == 0)
        return kelp_set_error(KELP_ERR_IO, "%s already exists; kelp export writes a new directory and never "
                                           "overwrites one", out);
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", out);
    char *slash = strrchr(parent, '/');
    if (slash == parent)
        slash[1] = 0;
    else if (slash)
        *slash = 0;
    else
        snprintf(parent, sizeof parent, ".");
    if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode))
        return kelp_set_error(KELP_ERR_IO, "%s: cannot create: %s is not a directory", out, parent);
    return KELP_OK;
}

int cmd_export(int argc, char **argv)
{
    static const struct option options[] = {
        {"checkpoint", required_argument, 0, 'c'}, {"out", required_argument, 0, 'o'},
        {"onnx", no_argument, 0, 'x'},             {"data", required_argument, 0, 'd'},
        {"split", required_argument, 0, 's'},      {"metrics", required_argument, 0, 'm'},
        {"name", required_argument, 0, 'n'},       {"title", required_argument, 0, 'T'},
        {"summary", required_argument, 0, 'S'},    {"author", required_argument, 0, 'a'},
        {"license", required_argument, 0, 'L'},    {"version", required_argument, 0, 'v'},
        {"source-url", required_argument, 0, 'u'}, {"max-pixels", required_argument, 0, 'p'},
        {"lib", required_argument, 0, 'l'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *checkpoint = NULL, *out = NULL, *data = NULL, *split_name = "test", *metrics = NULL, *lib = NULL;
    bool onnx = false;
    bundle_info info;
    bundle_info_defaults(&info);
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'c': checkpoint = optarg; break;
        case 'o': out = optarg; break;
        case 'x': onnx = true; break;
        case 'd': data = optarg; break;
        case 's': split_name = optarg; break;
        case 'm': metrics = optarg; break;
        case 'n': info.name = optarg; break;
        case 'T': info.title = optarg; break;
        case 'S': info.summary = optarg; break;
        case 'a': info.author = optarg; break;
        case 'L': info.license = optarg; break;
        case 'v': info.version = optarg; break;
        case 'u': info.source_url = optarg; break;
        case 'p':
            if (cli_parse_int(optarg, 1, (int)KELP_PREDICTOR_MAX_PIXELS, &info.max_pixels) != 0)
                return cli_usage_error("export", "--max-pixels needs an integer in [1, 2^28], got '%s'", optarg);
            break;
        case 'l': lib = optarg; break;
        case 'h': export_help(); return 0;
        default: return cli_usage_error("export", "bad option");
        }
    }
    if (!checkpoint || !out || optind != argc)
        return cli_usage_error("export", "--checkpoint and --out are required, and nothing else");
    char out_path[PATH_MAX];
    snprintf(out_path, sizeof out_path, "%s", out);
    for (size_t n = strlen(out_path); n > 1 && out_path[n - 1] == '/'; n--)
        out_path[n - 1] = 0; /* "bundle/" names the directory "bundle" */
    out = out_path;
    if (data && metrics)
        return cli_usage_error("export", "give --data or --metrics, not both");
    kelp_split split;
    if (kelp_split_parse(split_name, &split) != KELP_OK)
        return cli_usage_error("export", "--split must be train, val or test, got '%s'", split_name);
    char library[PATH_MAX];
    kelp_status s = lib ? (realpath(lib, library) ? KELP_OK : kelp_set_error(KELP_ERR_IO, "%s: %s", lib, strerror(errno)))
                        : find_library(library);
    if (s != KELP_OK)
        return cli_fail(s, "export");
    s = check_out(out);
    if (s != KELP_OK)
        return cli_fail(s, NULL);
    char *model = NULL;
    s = kelp_checkpoint_model(checkpoint, &model, NULL);
    if (s == KELP_OK)
        s = bundle_info_complete(&info, model);
    free(model);
    if (s == KELP_ERR_INVALID_ARG)
        return cli_usage_error("export", "%s", kelp_last_error());
    if (s != KELP_OK)
        return cli_fail(s, "export");

    size_t n = strlen(out) + sizeof ".tmp-XXXXXX";
    char *tmp = malloc(n);
    if (!tmp)
        return cli_fail(kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory"), "export");
    snprintf(tmp, n, "%s.tmp-XXXXXX", out);
    kelp_ctx *ctx = NULL;
    bool made = mkdtemp(tmp) != NULL;
    if (!made)
        s = kelp_set_error(KELP_ERR_IO, "%s: cannot create a directory beside it: %s", out, strerror(errno));
    if (s == KELP_OK && (s = kelp_ctx_create(NULL, &ctx)) == KELP_OK)
        s = write_bundle(ctx, checkpoint, &info, library, data, split, metrics, onnx, tmp);
    if (s == KELP_OK && chmod(tmp, 0755) != 0)
        s = kelp_set_error(KELP_ERR_IO, "%s: %s", tmp, strerror(errno));
    /* never replaces a directory that appeared at `out` meanwhile */
    if (s == KELP_OK && renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_NOREPLACE) != 0)
        s = kelp_set_error(KELP_ERR_IO, "%s: cannot create: %s", out, strerror(errno));
    if (s != KELP_OK && made)
        kelp_remove_tree(tmp);
    kelp_ctx_destroy(ctx);
    free(tmp);
    if (s != KELP_OK)
        return cli_fail(s, "export");
    printf("%s: module '%s' (Python package %s); serve it with: pip install -e %s && deepaas-run --model-name %s\n",
           out, info.module, info.package, out, info.module);
    return 0;
}
