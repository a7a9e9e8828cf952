/* kelp predict: PNG/JPEG files or directories -> top-k labels and probabilities. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/image.h"
#include "kelp/predictor.h"
#include "tools/cli.h"

static void predict_help(void)
{
    puts("Usage: kelp predict --checkpoint CKPT|--bundle DIR [--top-k K] [--json] [--device cpu|cuda[:N]] IMAGE|DIR...\n"
         "\n"
         "Prints the K (default 5) most probable classes of each PNG or JPEG image, with a checkpoint or a module\n"
         "bundle written by `kelp export` (the same engine as the bundle's REST API). A directory is read in name\n"
         "order, not recursively; hidden files and files that are neither PNG nor JPEG by their first bytes or\n"
         "their name (.png, .jpg, .jpeg) are skipped, each said on stderr, and a directory without images is an\n"
         "error. --json prints [{\"file\", \"labels\", \"probabilities\"}...]; a file that cannot be read gets\n"
         "{\"file\", \"error\"} and the exit status is 1.");
}

typedef struct predictor {
    kelp_predictor *model;
    int top_k;
    bool json;
    cJSON *results;
    int failures;
} predictor;

static void predict_file(predictor *p, const char *path)
{
    kelp_prediction *r = NULL;
    kelp_status s = kelp_predictor_predict_file(p->model, path, p->top_k, &r);
    if (s != KELP_OK) {
        p->failures++;
        if (p->json) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "file", path);
            cJSON_AddStringToObject(r, "error", kelp_last_error());
            cJSON_AddItemToArray(p->results, r);
        } else {
            fprintf(stderr, "kelp: predict: %s\n", kelp_last_error());
        }
        return;
    }
    if (p->json) {
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "file", path);
        cJSON *labels = cJSON_AddArrayToObject(item, "labels"), *probs = cJSON_AddArrayToObject(item, "probabilities");
        for (int i = 0; i < r->count; i++) {
            cJSON_AddItemToArray(labels, cJSON_CreateString(r->labels[i]));
            cJSON_AddItemToArray(probs, cJSON_CreateNumber(r->probabilities[i]));
        }
        cJSON_AddItemToArray(p->results, item);
    } else {
        printf("%s\n", path);
        for (int i = 0; i < r->count; i++)
            printf("  %6.2f%%  %s\n", 100 * r->probabilities[i], r->labels[i]);
    }
    kelp_prediction_free(r);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A directory's file is predicted when it is an image by its first bytes or its name (the rule of a folder import):
 * a stray README is skipped, a corrupt .jpg is an error. */
static bool wanted_in_dir(const char *path)
{
    kelp_image_format format;
    const char *slash = strrchr(path, '/');
    if (kelp_image_sniff_file(path, &format) != KELP_OK || format != KELP_IMAGE_UNKNOWN ||
        kelp_image_has_extension(slash ? slash + 1 : path))
        return true; /* an unreadable file is reported by predict_file */
    fprintf(stderr, "kelp: predict: skipped %s: not a PNG or JPEG image\n", path);
    return false;
}

/* The images of a directory, in name order, hidden files left out. A directory without any is an error that says
 * why (a folder of class folders is not read recursively). */
static void predict_dir(predictor *p, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        p->failures++;
        fprintf(stderr, "kelp: predict: %s: cannot read the directory: %s\n", dir, strerror(errno));
        return;
    }
    int dir_len = (int)strlen(dir);
    while (dir_len > 1 && dir[dir_len - 1] == '/')
        dir_len--;
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        size_t len = (size_t)dir_len + strlen(e->d_name) + 2;
        if ((names[n] = malloc(len)))
            snprintf(names[n++], len, "%.*s/%s", dir_len, dir, e->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, by_name);
    size_t images = 0, folders = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        bool ok = stat(names[i], &st) == 0;
        if (ok && S_ISREG(st.st_mode) && wanted_in_dir(names[i])) {
            predict_file(p, names[i]);
            images++;
        }
        folders += ok && S_ISDIR(st.st_mode);
        free(names[i]);
    }
    free(names);
    if (images == 0) {
        p->failures++;
        if (folders)
            fprintf(stderr, "kelp: predict: %s holds no PNG or JPEG images (its %zu subfolder%s not searched: name "
                            "them, e.g. %.*s/*/)\n",
                    dir, folders, folders == 1 ? " is" : "s are", dir_len, dir);
        else
            fprintf(stderr, "kelp: predict: %s holds no PNG or JPEG images\n", dir);
    }
}

int cmd_predict(int argc, char **argv)
{
    static const struct option options[] = {{"checkpoint", required_argument, 0, 'c'},
                                            {"bundle", required_argument, 0, 'b'},
                                            {"top-k", required_argument, 0, 'k'},
                                            {"json", no_argument, 0, 'j'},
                                            {"threads", required_argument, 0, 't'},
                                            {"device", required_argument, 0, 'D'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    const char *checkpoint = NULL;
    predictor p = {.top_k = 5};
    int threads = 0, opt;
    const char *po_device = "cpu";
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
        case 'b':
            if (checkpoint)
                return cli_usage_error("predict", "give one --checkpoint or one --bundle");
            checkpoint = optarg;
            break;
        case 'k':
            if (cli_parse_int(optarg, 1, 1000, &p.top_k) != 0)
                return cli_usage_error("predict", "--top-k needs an integer in [1, 1000], got '%s'", optarg);
            break;
        case 'j': p.json = true; break;
        case 'D': po_device = optarg; break;
        case 't':
            if (cli_parse_int(optarg, 0, 1024, &threads) != 0)
                return cli_usage_error("predict", "--threads needs an integer, got '%s'", optarg);
            break;
        case 'h': predict_help(); return 0;
        default: return cli_usage_error("predict", "bad option");
        }
    }
    if (!checkpoint || optind == argc)
        return cli_usage_error("predict", "--checkpoint or --bundle, and at least one image or directory, are required");
    kelp_predictor_options po = kelp_predictor_defaults();
    po.threads = threads;
    po.device = po_device;
    kelp_status s = kelp_predictor_open(checkpoint, &po, &p.model);
    if (s != KELP_OK)
        return cli_fail(s, "predict");
    p.results = cJSON_CreateArray();
    for (int i = optind; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
            predict_dir(&p, argv[i]);
        else
            predict_file(&p, argv[i]);
    }
    if (p.json) {
        char *text = cJSON_Print(p.results);
        puts(text ? text : "[]");
        free(text);
    }
    cJSON_Delete(p.results);
    kelp_predictor_close(p.model);
    return p.failures ? CLI_EXIT_FAILURE : 0;
}
