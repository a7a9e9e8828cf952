/* kelp data export: a classification split as PNG files in class folders (the inverse of import --format folder). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/dataset.h"
#include "io/image.h"
#include "tools/cli.h"

typedef struct export_job {
    const char *data, *dir, *class_name;
    kelp_split split;
    int count; /* 0: all */
    kelp_dataset *ds;
    char **folders; /* per class: the escaped folder name (NULL for classes not exported) */
    int label;      /* --class: its index; -1: every class */
    int64_t n;      /* images in the split */
    int digits;     /* of the zero-padded index */
    int64_t selected, written, *per_class;
    uint8_t *pixels;
    size_t pixel_cap;
} export_job;

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A class name as one safe folder name: '%', '/', control characters and a leading '.' (".", "..", hidden names,
 * which import skips) become %XX, so distinct names stay distinct. NULL when the result is over NAME_MAX bytes. */
static char *folder_name(const char *name)
{
    size_t len = strlen(name);
    char *out = malloc(3 * len + 1);
    if (!out)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch < 0x20 || ch == 0x7f || ch == '%' || ch == '/' || (i == 0 && ch == '.'))
            k += (size_t)sprintf(out + k, "%%%02X", ch);
        else
            out[k++] = (char)ch;
    }
    out[k] = '\0';
    if (k == 0 || k > 255) { /* an empty name has no folder; 255: NAME_MAX of Linux file systems */
        free(out);
        return NULL;
    }
    return out;
}

static kelp_status export_folder_names(export_job *j)
{
    int classes = kelp_dataset_class_count(j->ds);
    if (!(j->folders = calloc((size_t)classes, sizeof *j->folders)) ||
        !(j->per_class = calloc((size_t)classes, sizeof *j->per_class)))
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory for %d class names", classes);
    for (int c = 0; c < classes; c++) {
        if (j->label >= 0 && c != j->label)
            continue;
        const char *name = kelp_dataset_class_name(j->ds, c);
        if (!(j->folders[c] = folder_name(name)))
            return kelp_set_error(*name ? KELP_ERR_UNSUPPORTED : KELP_ERR_FORMAT,
                                  "%s: class %d '%s' cannot be a folder name (%s)", j->data, c, name,
                                  *name ? "over 255 bytes once escaped" : "it is empty");
    }
    /* Two classes of one name would merge into one folder: refused (names are at most 256 bytes, so the pairs
     * are compared through a sort rather than one by one). */
    char **sorted = malloc((size_t)classes * sizeof *sorted);
    if (!sorted)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory for %d class names", classes);
    int k = 0;
    for (int c = 0; c < classes; c++)
        if (j->folders[c])
            sorted[k++] = j->folders[c];
    qsort(sorted, (size_t)k, sizeof *sorted, compare_strings);
    kelp_status s = KELP_OK;
    for (int i = 1; s == KELP_OK && i < k; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            s = kelp_set_error(KELP_ERR_FORMAT, "%s: two classes are named '%s'; their images would share one "
                                                "folder",
                               j->data, sorted[i]);
    free(sorted);
    return s;
}

static char *export_path(const export_job *j, int label, int64_t index)
{
    size_t n = strlen(j->dir) + strlen(j->folders[label]) + (size_t)j->digits + 32;
    char *path = malloc(n);
    if (path)
        snprintf(path, n, "%s/%s/%0*" PRId64 ".png", j->dir, j->folders[label], j->digits, index);
    return path;
}

/* Calls visit(j, index, label, path) on each image to export, in split order. */
static kelp_status export_each(export_job *j, kelp_status (*visit)(export_job *, int64_t, int, const char *))
{
    const int32_t *labels = kelp_dataset_labels(j->ds, j->split);
    int64_t done = 0;
    kelp_status s = KELP_OK;
    for (int64_t i = 0; s == KELP_OK && i < j->n && (j->count == 0 || done < j->count); i++) {
        if (j->label >= 0 && labels[i] != j->label)
            continue;
        char *path = export_path(j, labels[i], i);
        s = path ? visit(j, i, labels[i], path) : kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory");
        free(path);
        done++;
    }
    return s;
}

static kelp_status refuse_existing(export_job *j, int64_t index, int label, const char *path)
{
    (void)index;
    (void)label;
    j->selected++;
    struct stat st;
    if (lstat(path, &st) == 0)
        return kelp_set_error(KELP_ERR_IO, "%s already exists; export never replaces a file (nothing was written: "
                                           "remove it or export to another folder)",
                              path);
    return KELP_OK;
}

/* mkdir -p: each missing component of path is created; the end must be a directory. */
static kelp_status make_dirs(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory");
    kelp_status s = KELP_OK;
    for (char *p = copy + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char end = *p;
        *p = '\0';
        struct stat st;
        if (mkdir(copy, 0777) != 0 && errno != EEXIST)
            s = kelp_set_error(KELP_ERR_IO, "%s: cannot create the folder: %s", copy, strerror(errno));
        else if (stat(copy, &st) != 0 || !S_ISDIR(st.st_mode))
            s = kelp_set_error(KELP_ERR_IO, "%s: not a folder", copy);
        *p = end;
        if (s != KELP_OK || end == '\0')
            break;
    }
    free(copy);
    return s;
}

/* Creates path (never replacing one) with the bytes; a failed write removes what it created. */
static kelp_status write_new_file(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
        return kelp_set_error(KELP_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    int saved = errno;
    if (close(fd) != 0 && done == size)
        saved = errno, done = 0;
    if (done != size) {
        unlink(path);
        return kelp_set_error(KELP_ERR_IO, "%s: write failed: %s", path, strerror(saved));
    }
    return KELP_OK;
}

/* DIR/<class>, with DIR and its parents, when the class's first image is written. */
static kelp_status make_class_dir(const export_job *j, int label)
{
    size_t n = strlen(j->dir) + strlen(j->folders[label]) + 2;
    char *path = malloc(n);
    if (!path)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory");
    snprintf(path, n, "%s/%s", j->dir, j->folders[label]);
    kelp_status s = make_dirs(path);
    free(path);
    return s;
}

static kelp_status export_image(export_job *j, int64_t index, int label, const char *path)
{
    if (j->per_class[label] == 0)
        KELP_TRY(make_class_dir(j, label));
    kelp_image_shape shape;
    KELP_TRY(kelp_dataset_image_shape(j->ds, j->split, index, &shape));
    size_t bytes = (size_t)shape.h * shape.w * shape.c;
    if (bytes > j->pixel_cap) {
        free(j->pixels);
        if (!(j->pixels = malloc(bytes))) {
            j->pixel_cap = 0;
            return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory for a %" PRIu32 " x %" PRIu32 " image",
                                  shape.h, shape.w);
        }
        j->pixel_cap = bytes;
    }
    KELP_TRY(kelp_dataset_read_image(j->ds, j->split, index, j->pixels, bytes));
    uint8_t *png;
    size_t size;
    kelp_status s = kelp_image_encode_png(j->pixels, shape.h, shape.w, shape.c, &png, &size);
    if (s != KELP_OK)
        return kelp_wrap_error(s, "%s: ", path);
    s = write_new_file(path, png, size);
    free(png);
    j->written += s == KELP_OK;
    j->per_class[label] += s == KELP_OK;
    return s;
}

static kelp_status export_find_class(export_job *j)
{
    j->label = -1;
    if (!j->class_name)
        return KELP_OK;
    for (int c = 0; c < kelp_dataset_class_count(j->ds); c++)
        if (strcmp(kelp_dataset_class_name(j->ds, c), j->class_name) == 0) {
            j->label = c;
            return KELP_OK;
        }
    char known[512] = "";
    size_t k = 0;
    for (int c = 0; c < kelp_dataset_class_count(j->ds) && k < sizeof known - 8; c++)
        k += (size_t)snprintf(known + k, sizeof known - k, "%s%s", c ? ", " : "", kelp_dataset_class_name(j->ds, c));
    if (k >= sizeof known - 8)
        strcpy(known + sizeof known - 8, "...");
    return kelp_set_error(KELP_ERR_NOT_FOUND, "%s has no class '%s' (its classes: %s)", j->data, j->class_name,
                          known);
}

static kelp_status export_check(export_job *j)
{
    kelp_task task = kelp_dataset_task(j->ds);
    if (task != KELP_TASK_CLASSIFY)
        return kelp_set_error(KELP_ERR_UNSUPPORTED, "%s is a %s dataset; export writes classification datasets "
                                                    "only (%s export is not supported yet)",
                              j->data, kelp_task_name(task), kelp_task_name(task));
    j->n = kelp_dataset_count(j->ds, j->split);
    if (j->n == 0) {
        char have[32] = "";
        for (int s = 0; s < KELP_SPLIT_COUNT; s++)
            if (kelp_dataset_count(j->ds, (kelp_split)s))
                snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", *have ? ", " : "",
                         kelp_split_name((kelp_split)s));
        return kelp_set_error(KELP_ERR_NOT_FOUND, "%s has no %s split (it has: %s)", j->data,
                              kelp_split_name(j->split), *have ? have : "none");
    }
    for (int64_t v = j->n - 1; v >= 10; v /= 10)
        j->digits++;
    j->digits++;
    KELP_TRY(export_find_class(j));
    return export_folder_names(j);
}

static void print_export_summary(const export_job *j)
{
    printf("wrote %" PRId64 " images of the %s split of %s to %s:", j->written, kelp_split_name(j->split), j->data,
           j->dir);
    bool first = true;
    for (int c = 0; c < kelp_dataset_class_count(j->ds); c++)
        if (j->per_class[c]) {
            printf("%s %s %" PRId64, first ? "" : ",", j->folders[c], j->per_class[c]);
            first = false;
        }
    printf("\n");
}

static int run_export(export_job *j)
{
    kelp_status s = kelp_dataset_open(j->data, &j->ds);
    if (s == KELP_OK)
        s = export_check(j);
    if (s == KELP_OK)
        s = export_each(j, refuse_existing);
    if (s == KELP_OK && j->selected == 0)
        s = kelp_set_error(KELP_ERR_NOT_FOUND, "%s: the %s split has no images of class '%s'", j->data,
                           kelp_split_name(j->split), j->class_name);
    if (s == KELP_OK)
        s = export_each(j, export_image);
    int rc = 0;
    if (s != KELP_OK)
        rc = cli_fail(s, NULL);
    else
        print_export_summary(j);
    if (j->ds)
        for (int c = 0; j->folders && c < kelp_dataset_class_count(j->ds); c++)
            free(j->folders[c]);
    free(j->folders);
    free(j->per_class);
    free(j->pixels);
    kelp_dataset_close(j->ds);
    return rc;
}

int cmd_data_export(int argc, char **argv)
{
    static const struct option options[] = {
        {"output", required_argument, 0, 'o'}, {"split", required_argument, 0, 's'},
        {"count", required_argument, 0, 'n'},  {"class", required_argument, 0, 'c'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    export_job j = {.split = KELP_SPLIT_TEST};
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "o:h", options, NULL)) != -1) {
        switch (opt) {
        case 'h': cmd_data_help(); return 0;
        case 'o': j.dir = optarg; break;
        case 's':
            if (kelp_split_parse(optarg, &j.split) != KELP_OK)
                return cli_usage_error("data", "--split must be train, val or test, got '%s'", optarg);
            break;
        case 'n':
            if (cli_parse_int(optarg, 1, INT32_MAX, &j.count) != 0)
                return cli_usage_error("data", "--count needs a positive integer, got '%s'", optarg);
            break;
        case 'c': j.class_name = optarg; break;
        default: return cli_usage_error("data", "bad option");
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("data", "export needs exactly one DATA.h5");
    if (!j.dir || !*j.dir)
        return cli_usage_error("data", "export needs -o DIR");
    j.data = argv[optind];
    return run_export(&j);
}

