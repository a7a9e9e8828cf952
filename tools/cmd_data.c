/* kelp data import | info | check | export */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/dataset.h"
#include "io/image.h"
#include "io/import.h"
#include "tools/cli.h"

#define PROGRESS_INTERVAL_S 3.0
#define MAX_CLASS_NAMES_ARG 4096

static const char *const FASHION_MNIST[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

void cmd_data_help(void)
{
    puts("Usage: kelp data import --format folder SRC_DIR -o DATA.h5 [options]\n"
         "       kelp data import --format idx TRAIN_IMAGES TRAIN_LABELS [TEST_IMAGES TEST_LABELS] -o DATA.h5 "
         "[options]\n"
         "       kelp data info DATA.h5 [--json]\n"
         "       kelp data check DATA.h5\n"
         "       kelp data export DATA.h5 -o DIR [--split train|val|test] [--count N] [--class NAME]\n"
         "\n"
         "import   write an HDF5 dataset from a folder of images (one subfolder per class, PNG or JPEG) or\n"
         "         from IDX files (MNIST, Fashion-MNIST; gzip'd or not)\n"
         "info     the task, classes, and per split the image count, class counts and image sizes\n"
         "check    read every record and report every problem (exit 0 when clean, 1 otherwise)\n"
         "export   write a split's images as PNG files DIR/<class>/<index>.png, the layout import --format folder\n"
         "         reads (classification datasets only; segmentation and detection export are not supported yet)\n"
         "\n"
         "import options:\n"
         "  -o, --output DATA.h5   the dataset to write (replaced only when the import succeeds)\n"
         "  --val-split F          fraction of each class for validation, in [0, 1) (default 0)\n"
         "  --test-split F         fraction of each class for test (folder, or idx without test files)\n"
         "  --seed N               the split's shuffle depends only on N (default 0)\n"
         "  --source TEXT          where the data comes from, stored in the file\n"
         "  --license TEXT         the data's license, stored in the file\n"
         "folder only:\n"
         "  --size HxW             resize every image to H x W (one fixed size); default: keep each size\n"
         "  --channels 1|3         default: 3 if any image has colour, else 1\n"
         "  --skip-bad             skip and count unreadable or corrupt images instead of failing\n"
         "idx only:\n"
         "  --class-names A,B,...  names of labels 0, 1, ... or 'fashion-mnist'; default: \"0\", \"1\", ...\n"
         "\n"
         "export options:\n"
         "  -o, --output DIR       the folder to write into (created if missing)\n"
         "  --split NAME           train, val or test (default test)\n"
         "  --count N              only the split's first N images (of --class, if given); default all\n"
         "  --class NAME           only the images of the class NAME\n"
         "  <index> is the image's index in the split, zero-padded to one width, so that name order is split\n"
         "  order. A class folder is the class name with '%', '/', control characters and a leading '.' written\n"
         "  as %XX (hex): 'T-shirt/top' -> T-shirt%2Ftop, '..' -> %2E. (a re-import keeps the folder names).\n"
         "  Existing files are never replaced: if any DIR/<class>/<index>.png to write exists, export writes\n"
         "  nothing and fails.");
}

/* ---- import ---- */

typedef struct import_args {
    const char *format, *output, *class_names_arg;
    bool size_set, channels_set, skip_bad_set;
    kelp_import_options opt;
    char *names_buf;
    const char *names[MAX_CLASS_NAMES_ARG];
} import_args;

static int parse_fraction(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0.0 && v < 1.0))
        return -1;
    *out = v;
    return 0;
}

static int parse_size(const char *s, kelp_import_options *opt)
{
    kelp_zoo_options z = {0};
    if (cli_parse_input_size(s, &z) != 0 || z.channels != 0 || z.height > KELP_IMAGE_MAX_SIDE ||
        z.width > KELP_IMAGE_MAX_SIDE)
        return -1;
    opt->height = (uint32_t)z.height;
    opt->width = (uint32_t)z.width;
    return 0;
}

/* Splits "a,b,c" in place into args->names; the preset name selects Fashion-MNIST's. */
static int parse_class_names(import_args *args)
{
    if (strcmp(args->class_names_arg, "fashion-mnist") == 0) {
        args->opt.class_names = FASHION_MNIST;
        args->opt.class_count = (int)(sizeof FASHION_MNIST / sizeof FASHION_MNIST[0]);
        return 0;
    }
    if (!(args->names_buf = strdup(args->class_names_arg)))
        return -1;
    int n = 0;
    for (char *p = args->names_buf;; p++) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (*p == '\0' || n == MAX_CLASS_NAMES_ARG)
            return -1;
        args->names[n++] = p;
        if (!comma)
            break;
        p = comma;
    }
    args->opt.class_names = args->names;
    args->opt.class_count = n;
    return 0;
}

static int parse_import_option(int opt, import_args *a)
{
    switch (opt) {
    case 'f':
        a->format = optarg;
        return 0;
    case 'o':
        a->output = optarg;
        return 0;
    case 's':
        a->size_set = true;
        return parse_size(optarg, &a->opt) ? cli_usage_error("data", "--size needs HxW, got '%s'", optarg) : 0;
    case 'c':
        a->channels_set = true;
        return cli_parse_int(optarg, 1, 3, &a->opt.channels) || a->opt.channels == 2
                   ? cli_usage_error("data", "--channels needs 1 or 3, got '%s'", optarg)
                   : 0;
    case 'v':
        return parse_fraction(optarg, &a->opt.val_fraction)
                   ? cli_usage_error("data", "--val-split needs a fraction in [0, 1), got '%s'", optarg)
                   : 0;
    case 't':
        return parse_fraction(optarg, &a->opt.test_fraction)
                   ? cli_usage_error("data", "--test-split needs a fraction in [0, 1), got '%s'", optarg)
                   : 0;
    case 'S':
        return cli_parse_u64(optarg, &a->opt.seed)
                   ? cli_usage_error("data", "--seed needs a non-negative integer, got '%s'", optarg)
                   : 0;
    case 'r':
        a->opt.source = optarg;
        return 0;
    case 'l':
        a->opt.license = optarg;
        return 0;
    case 'n':
        a->class_names_arg = optarg;
        return 0;
    case 'b':
        a->skip_bad_set = true;
        a->opt.skip_bad = true;
        return 0;
    default:
        return cli_usage_error("data", "bad option");
    }
}

/* Options that belong to the other format are refused rather than silently ignored. */
static int check_import_args(import_args *a, int positional)
{
    if (!a->format)
        return cli_usage_error("data", "import needs --format folder or --format idx");
    if (!a->output)
        return cli_usage_error("data", "import needs -o DATA.h5");
    if (!(a->opt.val_fraction + a->opt.test_fraction < 1.0))
        return cli_usage_error("data", "--val-split plus --test-split must be below 1");
    if (strcmp(a->format, "folder") == 0) {
        if (positional != 1)
            return cli_usage_error("data", "--format folder needs exactly one SRC_DIR");
        if (a->class_names_arg)
            return cli_usage_error("data", "--class-names applies to --format idx only (folder names are the "
                                           "class names)");
        return 0;
    }
    if (strcmp(a->format, "idx") != 0)
        return cli_usage_error("data", "unknown --format '%s' (expected folder or idx)", a->format);
    if (positional != 2 && positional != 4)
        return cli_usage_error("data", "--format idx needs TRAIN_IMAGES TRAIN_LABELS [TEST_IMAGES TEST_LABELS]");
    if (a->size_set || a->channels_set || a->skip_bad_set)
        return cli_usage_error("data", "--size, --channels and --skip-bad apply to --format folder only");
    if (positional == 4 && a->opt.test_fraction > 0.0)
        return cli_usage_error("data", "--test-split cannot be used with test files (they are the test split)");
    if (a->class_names_arg && parse_class_names(a) != 0)
        return cli_usage_error("data", "--class-names needs comma-separated non-empty names (at most %d) or "
                                       "'fashion-mnist'",
                               MAX_CLASS_NAMES_ARG);
    return 0;
}

typedef struct progress_state {
    struct timespec last;
} progress_state;

static double seconds_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + 1e-9 * (double)(now.tv_nsec - t->tv_nsec);
}

static void print_progress(void *user, int64_t done, int64_t total)
{
    progress_state *p = user;
    if (seconds_since(&p->last) < PROGRESS_INTERVAL_S)
        return;
    clock_gettime(CLOCK_MONOTONIC, &p->last);
    fprintf(stderr, "kelp data import: %" PRId64 " of %" PRId64 " images (%.0f%%)\n", done, total,
            total ? 100.0 * (double)done / (double)total : 100.0);
}

static void print_import_summary(const char *output, const kelp_import_summary *s, bool folder)
{
    printf("wrote %s: %d classes, %" PRIu32 " channel%s; train %" PRId64 ", val %" PRId64 ", test %" PRId64
           " images\n",
           output, s->class_count, s->channels, s->channels == 1 ? "" : "s", s->count[KELP_SPLIT_TRAIN],
           s->count[KELP_SPLIT_VAL], s->count[KELP_SPLIT_TEST]);
    if (folder)
        printf("skipped: %" PRId64 " hidden, %" PRId64 " not images, %" PRId64 " bad\n", s->skipped_hidden,
               s->skipped_other, s->skipped_bad);
}

static int run_import(import_args *a, char **positional)
{
    progress_state progress;
    clock_gettime(CLOCK_MONOTONIC, &progress.last);
    if (isatty(STDERR_FILENO)) {
        a->opt.progress = print_progress;
        a->opt.progress_user = &progress;
    }
    kelp_import_summary summary;
    bool folder = strcmp(a->format, "folder") == 0;
    kelp_status s = folder ? kelp_import_folder(positional[0], a->output, &a->opt, &summary)
                           : kelp_import_idx(positional[0], positional[1], positional[2], positional[3], a->output,
                                             &a->opt, &summary);
    if (s != KELP_OK)
        return cli_fail(s, NULL);
    print_import_summary(a->output, &summary, folder);
    return 0;
}

static int data_import(int argc, char **argv)
{
    static const struct option options[] = {
        {"format", required_argument, 0, 'f'},     {"output", required_argument, 0, 'o'},
        {"size", required_argument, 0, 's'},       {"channels", required_argument, 0, 'c'},
        {"val-split", required_argument, 0, 'v'},  {"test-split", required_argument, 0, 't'},
        {"seed", required_argument, 0, 'S'},       {"source", required_argument, 0, 'r'},
        {"license", required_argument, 0, 'l'},    {"class-names", required_argument, 0, 'n'},
        {"skip-bad", no_argument, 0, 'b'},         {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    import_args a = {.opt = kelp_import_defaults()};
    int opt, rc = 0;
    optind = 2;
    while (rc == 0 && (opt = getopt_long(argc, argv, "o:h", options, NULL)) != -1) {
        if (opt == 'h') {
            cmd_data_help();
            return 0;
        }
        rc = parse_import_option(opt, &a);
    }
    if (rc == 0)
        rc = check_import_args(&a, argc - optind);
    if (rc == 0) {
        char *positional[4] = {0};
        for (int i = 0; i < argc - optind; i++)
            positional[i] = argv[optind + i];
        rc = run_import(&a, positional);
    }
    free(a.names_buf);
    return rc;
}

/* ---- info ---- */

typedef struct range_stats {
    uint32_t min, max;
    double median;
} range_stats;

typedef struct split_info {
    int64_t count;
    bool fixed;
    kelp_image_shape shape;
    range_stats h, w, c;
    int64_t *class_counts; /* classify only */
} split_info;

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static range_stats range_of(uint32_t *v, int64_t n)
{
    qsort(v, (size_t)n, sizeof *v, compare_u32);
    double median = n % 2 ? v[n / 2] : 0.5 * ((double)v[n / 2 - 1] + (double)v[n / 2]);
    return (range_stats){v[0], v[n - 1], median};
}

static kelp_status variable_shapes(const kelp_dataset *ds, kelp_split split, split_info *si)
{
    uint32_t *dims = malloc(3 * (size_t)si->count * sizeof *dims);
    if (!dims)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory for %" PRId64 " image shapes", si->count);
    kelp_status s = KELP_OK;
    for (int64_t i = 0; s == KELP_OK && i < si->count; i++) {
        kelp_image_shape shape;
        s = kelp_dataset_image_shape(ds, split, i, &shape);
        dims[i] = shape.h;
        dims[si->count + i] = shape.w;
        dims[2 * si->count + i] = shape.c;
    }
    if (s == KELP_OK) {
        si->h = range_of(dims, si->count);
        si->w = range_of(dims + si->count, si->count);
        si->c = range_of(dims + 2 * si->count, si->count);
    }
    free(dims);
    return s;
}

static kelp_status gather_split(const kelp_dataset *ds, kelp_split split, split_info *si)
{
    si->count = kelp_dataset_count(ds, split);
    if (si->count == 0)
        return KELP_OK;
    const int32_t *labels = kelp_dataset_labels(ds, split);
    if (labels) {
        si->class_counts = calloc((size_t)kelp_dataset_class_count(ds), sizeof *si->class_counts);
        if (!si->class_counts)
            return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory counting classes");
        for (int64_t i = 0; i < si->count; i++)
            si->class_counts[labels[i]]++;
    }
    si->fixed = kelp_dataset_fixed_shape(ds, split, &si->shape);
    return si->fixed ? KELP_OK : variable_shapes(ds, split, si);
}

static void print_range(const char *name, const range_stats *r)
{
    printf("%s %" PRIu32 "..%" PRIu32 " (median %g)", name, r->min, r->max, r->median);
}

static void print_split_text(const kelp_dataset *ds, kelp_split split, const split_info *si)
{
    printf("%-9s ", kelp_split_name(split));
    if (si->count == 0) {
        puts("none");
        return;
    }
    printf("%" PRId64 " images, ", si->count);
    if (si->fixed) {
        printf("all %" PRIu32 " x %" PRIu32 " x %" PRIu32 "\n", si->shape.h, si->shape.w, si->shape.c);
    } else {
        printf("variable size: ");
        print_range("h", &si->h);
        print_range(", w", &si->w);
        print_range(", c", &si->c);
        printf("\n");
    }
    if (!si->class_counts)
        return;
    printf("          per class:");
    for (int c = 0; c < kelp_dataset_class_count(ds); c++)
        printf("%s %s %" PRId64, c ? "," : "", kelp_dataset_class_name(ds, c), si->class_counts[c]);
    printf("\n");
}

static void print_info_text(const kelp_dataset *ds, long long file_bytes, const split_info *splits)
{
    printf("file      %s (%.1f MiB)\n", kelp_dataset_path(ds), (double)file_bytes / (1024.0 * 1024.0));
    printf("task      %s\n", kelp_task_name(kelp_dataset_task(ds)));
    printf("classes   %d:", kelp_dataset_class_count(ds));
    for (int c = 0; c < kelp_dataset_class_count(ds); c++)
        printf("%s %s", c ? "," : "", kelp_dataset_class_name(ds, c));
    printf("\n");
    if (*kelp_dataset_source(ds))
        printf("source    %s\n", kelp_dataset_source(ds));
    if (*kelp_dataset_license(ds))
        printf("license   %s\n", kelp_dataset_license(ds));
    for (int split = 0; split < KELP_SPLIT_COUNT; split++)
        print_split_text(ds, (kelp_split)split, &splits[split]);
}

static cJSON *range_json(const range_stats *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "min", r->min);
    cJSON_AddNumberToObject(o, "median", r->median);
    cJSON_AddNumberToObject(o, "max", r->max);
    return o;
}

static cJSON *split_json(const kelp_dataset *ds, const split_info *si)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", (double)si->count);
    cJSON_AddBoolToObject(o, "fixed_shape", si->fixed);
    if (si->fixed) {
        const int shape[3] = {(int)si->shape.h, (int)si->shape.w, (int)si->shape.c};
        cJSON_AddItemToObject(o, "shape", cJSON_CreateIntArray(shape, 3));
    } else {
        cJSON_AddItemToObject(o, "h", range_json(&si->h));
        cJSON_AddItemToObject(o, "w", range_json(&si->w));
        cJSON_AddItemToObject(o, "c", range_json(&si->c));
    }
    if (si->class_counts) {
        cJSON *counts = cJSON_AddObjectToObject(o, "class_counts");
        for (int c = 0; c < kelp_dataset_class_count(ds); c++)
            cJSON_AddNumberToObject(counts, kelp_dataset_class_name(ds, c), (double)si->class_counts[c]);
    }
    return o;
}

static int print_info_json(const kelp_dataset *ds, long long file_bytes, const split_info *splits)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "path", kelp_dataset_path(ds));
    cJSON_AddNumberToObject(root, "file_bytes", (double)file_bytes);
    cJSON_AddStringToObject(root, "task", kelp_task_name(kelp_dataset_task(ds)));
    cJSON *classes = cJSON_AddArrayToObject(root, "classes");
    for (int c = 0; c < kelp_dataset_class_count(ds); c++)
        cJSON_AddItemToArray(classes, cJSON_CreateString(kelp_dataset_class_name(ds, c)));
    cJSON_AddStringToObject(root, "source", kelp_dataset_source(ds));
    cJSON_AddStringToObject(root, "license", kelp_dataset_license(ds));
    cJSON *split_obj = cJSON_AddObjectToObject(root, "splits");
    for (int split = 0; split < KELP_SPLIT_COUNT; split++)
        if (splits[split].count)
            cJSON_AddItemToObject(split_obj, kelp_split_name((kelp_split)split), split_json(ds, &splits[split]));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return cli_fail(kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory printing JSON"), NULL);
    puts(text);
    cJSON_free(text);
    return 0;
}

static int describe(kelp_dataset *ds, bool json)
{
    struct stat st;
    if (stat(kelp_dataset_path(ds), &st) != 0)
        return cli_fail(kelp_set_error(KELP_ERR_IO, "%s: cannot stat: %s", kelp_dataset_path(ds), strerror(errno)),
                        NULL);
    split_info splits[KELP_SPLIT_COUNT] = {0};
    kelp_status s = KELP_OK;
    for (int split = 0; s == KELP_OK && split < KELP_SPLIT_COUNT; split++)
        s = gather_split(ds, (kelp_split)split, &splits[split]);
    int rc = 0;
    if (s != KELP_OK)
        rc = cli_fail(s, kelp_dataset_path(ds));
    else if (json)
        rc = print_info_json(ds, (long long)st.st_size, splits);
    else
        print_info_text(ds, (long long)st.st_size, splits);
    for (int split = 0; split < KELP_SPLIT_COUNT; split++)
        free(splits[split].class_counts);
    return rc;
}

static int data_info(int argc, char **argv)
{
    static const struct option options[] = {
        {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    bool json = false;
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (opt == 'h') {
            cmd_data_help();
            return 0;
        }
        if (opt != 'j')
            return cli_usage_error("data", "bad option");
        json = true;
    }
    if (optind != argc - 1)
        return cli_usage_error("data", "info needs exactly one DATA.h5");
    kelp_dataset *ds;
    kelp_status s = kelp_dataset_open(argv[optind], &ds);
    if (s != KELP_OK)
        return cli_fail(s, NULL);
    int rc = describe(ds, json);
    kelp_dataset_close(ds);
    return rc;
}

/* ---- check ---- */

/* The reader's messages already name the file. */
static void print_problem(void *user, const char *problem)
{
    (void)user;
    puts(problem);
}

static int data_check(int argc, char **argv)
{
    if (argc == 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
        cmd_data_help();
        return 0;
    }
    if (argc != 3)
        return cli_usage_error("data", "check needs exactly one DATA.h5");
    const char *path = argv[2];
    int64_t problems = kelp_dataset_check(path, print_problem, NULL);
    if (problems < 0) {
        fprintf(stderr, "kelp: %s\n", kelp_last_error());
        return CLI_EXIT_FAILURE;
    }
    if (problems == 0) {
        printf("%s: no problems\n", path);
        return 0;
    }
    printf("%s: %" PRId64 " problem%s\n", path, problems, problems == 1 ? "" : "s");
    return CLI_EXIT_FAILURE;
}

int cmd_data(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        cmd_data_help();
        return argc < 2 ? CLI_EXIT_USAGE : 0;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "import") == 0)
        return data_import(argc, argv);
    if (strcmp(verb, "info") == 0)
        return data_info(argc, argv);
    if (strcmp(verb, "check") == 0)
        return data_check(argc, argv);
    if (strcmp(verb, "export") == 0)
        return cmd_data_export(argc, argv);
    return cli_usage_error("data", "unknown verb '%s' (expected import, info, check or export)", verb);
}
