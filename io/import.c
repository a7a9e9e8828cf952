/* Importers: image folders and IDX files into kelp datasets. */
#include "io/import.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/idx.h"
#include "io/image.h"

kelp_import_options kelp_import_defaults(void)
{
    return (kelp_import_options){0};
}

/* ---- stratified splits ---- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n): draws above the largest multiple of n are redrawn instead of folded (no modulo bias). */
static uint64_t random_below(uint64_t *state, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, r;
    do
        r = splitmix64(state);
    while (r >= limit);
    return r % n;
}

static void shuffle(int64_t *items, int64_t n, uint64_t *state)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)random_below(state, (uint64_t)i + 1);
        int64_t t = items[i];
        items[i] = items[j];
        items[j] = t;
    }
}

static kelp_status check_fractions(double val, double test)
{
    if (!(val >= 0.0 && val < 1.0) || !(test >= 0.0 && test < 1.0) || !(val + test < 1.0))
        return kelp_set_error(KELP_ERR_INVALID_ARG,
                              "split fractions val %g and test %g: each must be in [0, 1) and their sum below 1", val,
                              test);
    return KELP_OK;
}

static int64_t round_share(double fraction, int64_t n)
{
    return (int64_t)floor(fraction * (double)n + 0.5);
}

/* Marks one class's members (already in source order) after shuffling them. */
static void split_class(int64_t *members, int64_t n, int class_index, double val, double test, uint64_t seed,
                        uint8_t *out)
{
    /* Seeding per class keeps one class's split unchanged when another class gains or loses images. */
    uint64_t state = seed + 0xD1B54A32D192ED03ull * (uint64_t)(class_index + 1);
    shuffle(members, n, &state);
    int64_t keep = n > 0 ? n - 1 : 0;
    int64_t n_val = round_share(val, n), n_test = round_share(test, n);
    n_val = n_val > keep ? keep : n_val;
    n_test = n_test > keep - n_val ? keep - n_val : n_test;
    for (int64_t k = 0; k < n; k++)
        out[members[k]] = (uint8_t)(k < n_val ? KELP_SPLIT_VAL : k < n_val + n_test ? KELP_SPLIT_TEST
                                                                                     : KELP_SPLIT_TRAIN);
}

kelp_status kelp_import_assign_splits(const int32_t *labels, int64_t count, int class_count, double val_fraction,
                                      double test_fraction, uint64_t seed, uint8_t *out)
{
    KELP_TRY(check_fractions(val_fraction, test_fraction));
    if (count < 0 || count > KELP_DATASET_MAX_IMAGES || class_count < 1 || class_count > KELP_DATASET_MAX_CLASSES ||
        (count > 0 && (!labels || !out)))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "assign splits: %" PRId64 " items in %d classes", count,
                              class_count);
    for (int64_t i = 0; i < count; i++)
        if (labels[i] < 0 || labels[i] >= class_count)
            return kelp_set_error(KELP_ERR_INVALID_ARG, "assign splits: label %" PRId32 " of item %" PRId64
                                                        " is outside [0, %d)",
                                  labels[i], i, class_count);
    /* A counting sort groups each class's items, in source order. */
    int64_t *start = calloc((size_t)class_count + 1, sizeof *start);
    int64_t *fill = malloc(((size_t)class_count + 1) * sizeof *fill);
    int64_t *grouped = malloc((size_t)(count ? count : 1) * sizeof *grouped);
    kelp_status s = KELP_OK;
    if (!start || !fill || !grouped) {
        s = kelp_set_error(KELP_ERR_NO_MEMORY, "assign splits: out of memory for %" PRId64 " items", count);
    } else {
        for (int64_t i = 0; i < count; i++)
            start[labels[i] + 1]++;
        for (int c = 0; c < class_count; c++)
            start[c + 1] += start[c];
        memcpy(fill, start, ((size_t)class_count + 1) * sizeof *fill);
        for (int64_t i = 0; i < count; i++)
            grouped[fill[labels[i]]++] = i;
        for (int c = 0; c < class_count; c++)
            split_class(grouped + start[c], start[c + 1] - start[c], c, val_fraction, test_fraction, seed, out);
    }
    free(start);
    free(fill);
    free(grouped);
    return s;
}

/* ---- shared writing pieces ---- */

static void report_progress(const kelp_import_options *opt, int64_t done, int64_t total)
{
    if (opt->progress)
        opt->progress(opt->progress_user, done, total);
}

static kelp_status finish_or_abort(kelp_dataset_writer *w, kelp_status s)
{
    if (s != KELP_OK) {
        kelp_dataset_writer_abort(w);
        return s;
    }
    return kelp_dataset_writer_finish(w);
}

static int64_t count_in_split(const uint8_t *splits, int64_t n, kelp_split split)
{
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        k += splits[i] == split;
    return k;
}

/* ---- folder import ---- */

typedef struct strings {
    char **items;
    size_t count, cap;
} strings;

static void strings_free(strings *s)
{
    for (size_t i = 0; i < s->count; i++)
        free(s->items[i]);
    free(s->items);
    memset(s, 0, sizeof *s);
}

static kelp_status strings_push(strings *s, const char *text)
{
    if (s->count == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        char **grown = realloc(s->items, cap * sizeof *grown);
        if (!grown)
            return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory listing %zu names", s->count);
        s->items = grown;
        s->cap = cap;
    }
    if (!(s->items[s->count] = strdup(text)))
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory listing %zu names", s->count);
    s->count++;
    return KELP_OK;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every entry but "." and "..", sorted bytewise so that class indices and record order never depend on the file
 * system's directory order. */
static kelp_status list_folder(const char *dir, strings *out)
{
    DIR *d = opendir(dir);
    if (!d)
        return kelp_set_error(KELP_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    kelp_status s = KELP_OK;
    errno = 0;
    for (struct dirent *e; s == KELP_OK && (e = readdir(d)); errno = 0)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            s = strings_push(out, e->d_name);
    if (s == KELP_OK && errno)
        s = kelp_set_error(KELP_ERR_IO, "%s: cannot list folder: %s", dir, strerror(errno));
    closedir(d);
    if (s == KELP_OK && out->count)
        qsort(out->items, out->count, sizeof *out->items, compare_strings);
    return s;
}

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char *path = malloc(n);
    if (path)
        snprintf(path, n, "%s/%s", dir, name);
    return path;
}

typedef struct folder_item {
    char *path;
    int32_t label;
} folder_item;

typedef struct folder_import {
    const kelp_import_options *opt;
    kelp_import_summary *summary;
    char *root; /* without trailing slashes */
    strings classes;
    folder_item *items;
    int64_t count, cap;
    bool any_color;
    uint8_t *splits;
    uint8_t *resized; /* height * width * channels, with a resize */
} folder_import;

static void folder_import_free(folder_import *imp)
{
    for (int64_t i = 0; i < imp->count; i++)
        free(imp->items[i].path);
    free(imp->items);
    strings_free(&imp->classes);
    free(imp->root);
    free(imp->splits);
    free(imp->resized);
}

/* With skip_bad, a bad image is counted and forgotten; otherwise its error (which names it) ends the import. */
static kelp_status bad_image(folder_import *imp, kelp_status s)
{
    if (!imp->opt->skip_bad)
        return s;
    imp->summary->skipped_bad++;
    kelp_clear_error();
    return KELP_OK;
}

static kelp_status add_item(folder_import *imp, const char *path, int32_t label)
{
    if (imp->count >= KELP_DATASET_MAX_IMAGES)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "%s: more than %d images", imp->root, KELP_DATASET_MAX_IMAGES);
    if (imp->count == imp->cap) {
        int64_t cap = imp->cap ? 2 * imp->cap : 256;
        folder_item *grown = realloc(imp->items, (size_t)cap * sizeof *grown);
        if (!grown)
            return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory listing %" PRId64 " images", imp->count);
        imp->items = grown;
        imp->cap = cap;
    }
    char *copy = strdup(path);
    if (!copy)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory listing %" PRId64 " images", imp->count);
    imp->items[imp->count++] = (folder_item){copy, label};
    return KELP_OK;
}

static kelp_status probe_file(const char *path, kelp_image_header *hdr)
{
    uint8_t *data;
    size_t size;
    KELP_TRY(kelp_image_read_file(path, &data, &size));
    kelp_status s = kelp_image_probe_memory(data, size, path, hdr);
    free(data);
    return s;
}

static kelp_status scan_file(folder_import *imp, const char *path, const char *name, int32_t label)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return bad_image(imp, kelp_set_error(KELP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno)));
    if (!S_ISREG(st.st_mode)) {
        imp->summary->skipped_other++;
        return KELP_OK;
    }
    kelp_image_format format = KELP_IMAGE_UNKNOWN;
    kelp_status s = kelp_image_sniff_file(path, &format);
    if (s == KELP_OK && format == KELP_IMAGE_UNKNOWN && !kelp_image_has_extension(name)) {
        imp->summary->skipped_other++;
        return KELP_OK;
    }
    kelp_image_header hdr;
    if (s == KELP_OK)
        s = probe_file(path, &hdr);
    if (s != KELP_OK)
        return bad_image(imp, s);
    imp->any_color |= hdr.color;
    return add_item(imp, path, label);
}

static kelp_status scan_class(folder_import *imp, int32_t label)
{
    char *dir = join_path(imp->root, imp->classes.items[label]);
    if (!dir)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory naming a class folder");
    strings names = {0};
    int64_t before = imp->count;
    kelp_status s = list_folder(dir, &names);
    for (size_t i = 0; s == KELP_OK && i < names.count; i++) {
        if (names.items[i][0] == '.') {
            imp->summary->skipped_hidden++;
            continue;
        }
        char *path = join_path(dir, names.items[i]);
        s = path ? scan_file(imp, path, names.items[i], label)
                 : kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory naming a file");
        free(path);
    }
    if (s == KELP_OK && imp->count == before)
        s = kelp_set_error(KELP_ERR_FORMAT, "%s: class folder '%s' holds no images", dir, imp->classes.items[label]);
    strings_free(&names);
    free(dir);
    return s;
}

static kelp_status scan_classes(folder_import *imp)
{
    strings names = {0};
    kelp_status s = list_folder(imp->root, &names);
    for (size_t i = 0; s == KELP_OK && i < names.count; i++) {
        struct stat st;
        char *path = join_path(imp->root, names.items[i]);
        if (!path) {
            s = kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory naming a class folder");
        } else if (names.items[i][0] == '.') {
            imp->summary->skipped_hidden++;
        } else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            s = imp->classes.count < KELP_DATASET_MAX_CLASSES
                    ? strings_push(&imp->classes, names.items[i])
                    : kelp_set_error(KELP_ERR_NO_MEMORY, "%s: more than %d class folders", imp->root,
                                     KELP_DATASET_MAX_CLASSES);
        } else {
            imp->summary->skipped_other++;
        }
        free(path);
    }
    strings_free(&names);
    if (s == KELP_OK && imp->classes.count == 0)
        s = kelp_set_error(KELP_ERR_FORMAT, "%s: no class folders (expected one subfolder of images per class)",
                           imp->root);
    return s;
}

static kelp_status folder_assign_splits(folder_import *imp)
{
    int32_t *labels = malloc((size_t)imp->count * sizeof *labels);
    imp->splits = malloc((size_t)imp->count);
    if (!labels || !imp->splits) {
        free(labels);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory splitting %" PRId64 " images", imp->count);
    }
    for (int64_t i = 0; i < imp->count; i++)
        labels[i] = imp->items[i].label;
    kelp_status s = kelp_import_assign_splits(labels, imp->count, (int)imp->classes.count, imp->opt->val_fraction,
                                              imp->opt->test_fraction, imp->opt->seed, imp->splits);
    free(labels);
    return s;
}

static kelp_status append_folder_image(kelp_dataset_writer *w, folder_import *imp, int64_t index,
                                       const kelp_image *img)
{
    kelp_dataset_record rec = {.pixels = img->pixels, .shape = {img->h, img->w, img->c},
                               .label = imp->items[index].label, .image_id = index};
    if (imp->opt->height) {
        KELP_TRY(kelp_image_resize(img->pixels, img->h, img->w, img->c, imp->resized, imp->opt->height,
                                   imp->opt->width));
        rec.pixels = imp->resized;
        rec.shape = (kelp_image_shape){imp->opt->height, imp->opt->width, img->c};
    }
    return kelp_dataset_append(w, &rec);
}

static kelp_status write_folder_split(kelp_dataset_writer *w, folder_import *imp, kelp_split split, int64_t *done)
{
    if (count_in_split(imp->splits, imp->count, split) == 0)
        return KELP_OK;
    kelp_image_shape fixed = {imp->opt->height, imp->opt->width, imp->summary->channels};
    KELP_TRY(kelp_dataset_begin_split(w, split, imp->opt->height ? &fixed : NULL));
    for (int64_t i = 0; i < imp->count; i++) {
        if (imp->splits[i] != split)
            continue;
        kelp_image img;
        kelp_status s = kelp_image_decode_file(imp->items[i].path, (int)imp->summary->channels, &img);
        if (s == KELP_OK) {
            s = append_folder_image(w, imp, i, &img);
            imp->summary->count[split] += s == KELP_OK;
            kelp_image_free(&img);
            KELP_TRY(s);
        } else {
            KELP_TRY(bad_image(imp, s));
        }
        report_progress(imp->opt, ++*done, imp->count);
    }
    return KELP_OK;
}

static kelp_status write_folder(folder_import *imp, const char *out_path)
{
    if (imp->opt->height) {
        imp->resized = malloc((size_t)imp->opt->height * imp->opt->width * imp->summary->channels);
        if (!imp->resized)
            return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory for a resized image");
    }
    kelp_dataset_info info = {KELP_TASK_CLASSIFY, (const char *const *)imp->classes.items,
                              (int)imp->classes.count, imp->opt->source, imp->opt->license};
    kelp_dataset_writer *w;
    KELP_TRY(kelp_dataset_create(out_path, &info, &w));
    kelp_status s = KELP_OK;
    int64_t done = 0;
    for (int split = 0; s == KELP_OK && split < KELP_SPLIT_COUNT; split++)
        s = write_folder_split(w, imp, (kelp_split)split, &done);
    return finish_or_abort(w, s);
}

static kelp_status check_folder_options(const kelp_import_options *opt)
{
    KELP_TRY(check_fractions(opt->val_fraction, opt->test_fraction));
    if (opt->channels != 0 && opt->channels != 1 && opt->channels != 3)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "folder import: %d channels (expected 1, 3, or 0 for the "
                                                    "images' own)",
                              opt->channels);
    if ((opt->height == 0) != (opt->width == 0) || opt->height > KELP_IMAGE_MAX_SIDE ||
        opt->width > KELP_IMAGE_MAX_SIDE)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "folder import: size %" PRIu32 " x %" PRIu32 " (both sides "
                                                    "1 to %d, or both 0 to keep each image's size)",
                              opt->height, opt->width, KELP_IMAGE_MAX_SIDE);
    return KELP_OK;
}

static char *strip_trailing_slashes(const char *dir)
{
    char *copy = strdup(dir);
    if (!copy)
        return NULL;
    for (size_t n = strlen(copy); n > 1 && copy[n - 1] == '/'; n--)
        copy[n - 1] = '\0';
    return copy;
}

kelp_status kelp_import_folder(const char *src_dir, const char *out_path, const kelp_import_options *options,
                               kelp_import_summary *summary)
{
    memset(summary, 0, sizeof *summary);
    if (!src_dir || !out_path || !options)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "folder import: no source folder, output path or options");
    KELP_TRY(check_folder_options(options));
    folder_import imp = {.opt = options, .summary = summary, .root = strip_trailing_slashes(src_dir)};
    kelp_status s = imp.root ? scan_classes(&imp) : kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory");
    for (size_t c = 0; s == KELP_OK && c < imp.classes.count; c++)
        s = scan_class(&imp, (int32_t)c);
    if (s == KELP_OK) {
        summary->class_count = (int)imp.classes.count;
        summary->channels = (uint32_t)(options->channels ? options->channels : imp.any_color ? 3 : 1);
        s = folder_assign_splits(&imp);
    }
    if (s == KELP_OK)
        s = write_folder(&imp, out_path);
    folder_import_free(&imp);
    return s;
}

/* ---- IDX import ---- */

typedef struct idx_pair {
    const char *images_path, *labels_path;
    kelp_idx images, labels;
} idx_pair;

static void idx_pair_free(idx_pair *p)
{
    kelp_idx_free(&p->images);
    kelp_idx_free(&p->labels);
}

static kelp_status read_pair(idx_pair *p)
{
    KELP_TRY(kelp_idx_read(p->images_path, &p->images));
    KELP_TRY(kelp_idx_read(p->labels_path, &p->labels));
    if (p->images.rank != 3)
        return kelp_set_error(KELP_ERR_FORMAT, "%s: expected images [N,H,W] (rank 3), got rank %d", p->images_path,
                              p->images.rank);
    if (p->labels.rank != 1)
        return kelp_set_error(KELP_ERR_FORMAT, "%s: expected labels [N] (rank 1), got rank %d", p->labels_path,
                              p->labels.rank);
    if (p->images.dims[0] != p->labels.dims[0])
        return kelp_set_error(KELP_ERR_FORMAT, "%s holds %" PRIu32 " images but %s holds %" PRIu32 " labels",
                              p->images_path, p->images.dims[0], p->labels_path, p->labels.dims[0]);
    return KELP_OK;
}

static int max_label(const idx_pair *p)
{
    int m = 0;
    for (size_t i = 0; i < p->labels.count; i++)
        m = p->labels.data[i] > m ? p->labels.data[i] : m;
    return m;
}

static kelp_status check_labels(const idx_pair *p, int class_count)
{
    for (size_t i = 0; i < p->labels.count; i++)
        if (p->labels.data[i] >= class_count)
            return kelp_set_error(KELP_ERR_FORMAT, "%s: label %d of item %zu is not below the %d class names",
                                  p->labels_path, p->labels.data[i], i, class_count);
    return KELP_OK;
}

typedef struct idx_import {
    const kelp_import_options *opt;
    kelp_import_summary *summary;
    idx_pair train, test;
    bool has_test;
    uint8_t *splits; /* of the train items */
    char names_buf[256][12]; /* "0".."255"; sized for any int so that the compiler can prove no truncation */
    const char *names[256];
    int64_t done, total;
} idx_import;

static kelp_status write_idx_items(kelp_dataset_writer *w, idx_import *imp, const idx_pair *p,
                                   const uint8_t *splits, kelp_split split)
{
    uint32_t h = p->images.dims[1], width = p->images.dims[2];
    size_t stride = (size_t)h * width;
    for (size_t i = 0; i < p->labels.count; i++) {
        if (splits && splits[i] != split)
            continue;
        kelp_dataset_record rec = {.pixels = p->images.data + i * stride, .shape = {h, width, 1},
                                   .label = p->labels.data[i], .image_id = (int64_t)i};
        KELP_TRY(kelp_dataset_append(w, &rec));
        imp->summary->count[split]++;
        report_progress(imp->opt, ++imp->done, imp->total);
    }
    return KELP_OK;
}

static kelp_status write_idx_split(kelp_dataset_writer *w, idx_import *imp, kelp_split split)
{
    bool from_test_files = split == KELP_SPLIT_TEST && imp->has_test;
    const idx_pair *p = from_test_files ? &imp->test : &imp->train;
    const uint8_t *splits = from_test_files ? NULL : imp->splits;
    int64_t n = splits ? count_in_split(splits, (int64_t)p->labels.count, split) : (int64_t)p->labels.count;
    if (n == 0)
        return KELP_OK;
    kelp_image_shape fixed = {p->images.dims[1], p->images.dims[2], 1};
    KELP_TRY(kelp_dataset_begin_split(w, split, &fixed));
    return write_idx_items(w, imp, p, splits, split);
}

static kelp_status idx_class_names(idx_import *imp, kelp_dataset_info *info)
{
    const kelp_import_options *opt = imp->opt;
    int count = opt->class_names ? opt->class_count : max_label(&imp->train) + 1;
    if (!opt->class_names && imp->has_test && max_label(&imp->test) + 1 > count)
        count = max_label(&imp->test) + 1;
    if (opt->class_names && (opt->class_count < 1 || opt->class_count > KELP_DATASET_MAX_CLASSES))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "IDX import: %d class names", opt->class_count);
    KELP_TRY(check_labels(&imp->train, count));
    if (imp->has_test)
        KELP_TRY(check_labels(&imp->test, count));
    for (int c = 0; !opt->class_names && c < count; c++) {
        snprintf(imp->names_buf[c], sizeof imp->names_buf[c], "%d", c);
        imp->names[c] = imp->names_buf[c];
    }
    info->class_names = opt->class_names ? opt->class_names : imp->names;
    info->class_count = count;
    return KELP_OK;
}

static kelp_status idx_assign_splits(idx_import *imp)
{
    size_t n = imp->train.labels.count;
    int32_t *labels = malloc(n * sizeof *labels);
    imp->splits = malloc(n);
    if (!labels || !imp->splits) {
        free(labels);
        return kelp_set_error(KELP_ERR_NO_MEMORY, "out of memory splitting %zu images", n);
    }
    for (size_t i = 0; i < n; i++)
        labels[i] = imp->train.labels.data[i];
    kelp_status s = kelp_import_assign_splits(labels, (int64_t)n, imp->summary->class_count, imp->opt->val_fraction,
                                              imp->opt->test_fraction, imp->opt->seed, imp->splits);
    free(labels);
    return s;
}

static kelp_status read_idx_inputs(idx_import *imp)
{
    KELP_TRY(read_pair(&imp->train));
    if (!imp->has_test)
        return KELP_OK;
    KELP_TRY(read_pair(&imp->test));
    if (imp->test.images.dims[1] != imp->train.images.dims[1] ||
        imp->test.images.dims[2] != imp->train.images.dims[2])
        return kelp_set_error(KELP_ERR_SHAPE, "%s holds %" PRIu32 " x %" PRIu32 " images but %s holds %" PRIu32
                                              " x %" PRIu32,
                              imp->test.images_path, imp->test.images.dims[1], imp->test.images.dims[2],
                              imp->train.images_path, imp->train.images.dims[1], imp->train.images.dims[2]);
    return KELP_OK;
}

static kelp_status import_idx(idx_import *imp, const char *out_path)
{
    KELP_TRY(read_idx_inputs(imp));
    kelp_dataset_info info = {.task = KELP_TASK_CLASSIFY, .source = imp->opt->source, .license = imp->opt->license};
    KELP_TRY(idx_class_names(imp, &info));
    imp->summary->class_count = info.class_count;
    imp->summary->channels = 1;
    KELP_TRY(idx_assign_splits(imp));
    imp->total = (int64_t)imp->train.labels.count + (imp->has_test ? (int64_t)imp->test.labels.count : 0);
    kelp_dataset_writer *w;
    KELP_TRY(kelp_dataset_create(out_path, &info, &w));
    kelp_status s = KELP_OK;
    for (int split = 0; s == KELP_OK && split < KELP_SPLIT_COUNT; split++)
        s = write_idx_split(w, imp, (kelp_split)split);
    return finish_or_abort(w, s);
}

kelp_status kelp_import_idx(const char *train_images, const char *train_labels, const char *test_images,
                            const char *test_labels, const char *out_path, const kelp_import_options *options,
                            kelp_import_summary *summary)
{
    memset(summary, 0, sizeof *summary);
    if (!train_images || !train_labels || !out_path || !options || (!test_images != !test_labels))
        return kelp_set_error(KELP_ERR_INVALID_ARG, "IDX import: needs train images and labels, an output path, "
                                                    "and test images and labels together or not at all");
    KELP_TRY(check_fractions(options->val_fraction, options->test_fraction));
    if (test_images && options->test_fraction > 0.0)
        return kelp_set_error(KELP_ERR_INVALID_ARG, "IDX import: a test fraction and test files are exclusive (the "
                                                    "test files are the test split)");
    idx_import *imp = malloc(sizeof *imp);
    if (!imp)
        return kelp_set_error(KELP_ERR_NO_MEMORY, "IDX import: out of memory");
    *imp = (idx_import){.opt = options, .summary = summary, .train = {train_images, train_labels},
                        .test = {test_images, test_labels}, .has_test = test_images != NULL};
    kelp_status s = import_idx(imp, out_path);
    idx_pair_free(&imp->train);
    idx_pair_free(&imp->test);
    free(imp->splits);
    free(imp);
    return s;
}
