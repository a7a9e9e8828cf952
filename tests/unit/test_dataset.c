/* io/dataset: writer and reader round trips for every task and layout, atomic finish and abort, record validation,
 * API misuse, and concurrent record reads. Malformed files are in test_dataset_malformed.c. */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/dataset.h"
#include "ref/test_util.h"

/* ---------------------------------------------------------------- a scratch directory per test */

typedef struct scratch {
    char dir[256];
    char target[300];
} scratch;

static void scratch_make(scratch *s)
{
    snprintf(s->dir, sizeof s->dir, "%s", test_temp_path("-dataset"));
    assert_int_equal(mkdir(s->dir, 0755), 0);
    snprintf(s->target, sizeof s->target, "%s/data.h5", s->dir);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* rmdir fails when anything but the target is left, e.g. a temp file. */
static void scratch_remove(scratch *s)
{
    unlink(s->target);
    assert_int_equal(rmdir(s->dir), 0);
}

/* ---------------------------------------------------------------- deterministic records */

static const char *const CLASS_NAMES[] = {"Noctiluca scintillans", "Ceratium – spp.", "珪藻", "Ωmega détritus"};
#define N_CLASSES 4

typedef struct spec {
    kelp_task task;
    bool variable;
    uint32_t channels;
    int64_t counts[KELP_SPLIT_COUNT]; /* -1: split not written */
} spec;

typedef struct record_data {
    kelp_dataset_record rec;
    uint8_t pixels[16 * 16 * 4];
    uint8_t mask[16 * 16];
    float boxes[4 * 4];
    int32_t box_labels[4];
} record_data;

static kelp_image_shape shape_of(const spec *sp, int split, int64_t i)
{
    if (!sp->variable)
        return (kelp_image_shape){5, 7, sp->channels};
    return (kelp_image_shape){(uint32_t)(1 + (i * 5 + split) % 13), (uint32_t)(2 + (i * 3 + 2 * split) % 11),
                              sp->channels};
}

/* Every third record leaves its id to the writer (the index). */
static int64_t id_of(int split, int64_t i)
{
    return i % 3 == 2 ? -1 : 1000 * split + 3 * i + 1;
}

static void make_record(const spec *sp, int split, int64_t i, record_data *d)
{
    memset(d, 0, sizeof *d);
    kelp_image_shape s = shape_of(sp, split, i);
    size_t pixels = (size_t)s.h * s.w;
    for (size_t p = 0; p < pixels * s.c; p++)
        d->pixels[p] = (uint8_t)(p * 31 + (size_t)i * 7 + (size_t)split * 13);
    for (size_t p = 0; p < pixels; p++)
        d->mask[p] = (p + (size_t)i) % 5 == 4 ? 255 : (uint8_t)((p + (size_t)i + (size_t)split) % N_CLASSES);
    int n = (int)((i + split) % 4);
    for (int b = 0; b < n; b++) {
        float *x = &d->boxes[4 * b];
        x[0] = (float)i + (float)b;
        x[1] = 0.5f * (float)b;
        x[2] = x[0] + 2.5f;
        x[3] = x[1] + 1.0f;
        d->box_labels[b] = (int32_t)((b + i) % N_CLASSES);
    }
    d->rec = (kelp_dataset_record){.pixels = d->pixels,
                                   .shape = s,
                                   .label = (int32_t)((i + split) % N_CLASSES),
                                   .mask = sp->task == KELP_TASK_SEGMENT ? d->mask : NULL,
                                   .boxes = d->boxes,
                                   .box_labels = d->box_labels,
                                   .n_boxes = sp->task == KELP_TASK_DETECT ? n : 0,
                                   .image_id = id_of(split, i)};
}

static const kelp_dataset_info *info_for(kelp_task task)
{
    static kelp_dataset_info info;
    info = (kelp_dataset_info){.task = task,
                               .class_names = CLASS_NAMES,
                               .class_count = N_CLASSES,
                               .source = "WHOI-Plankton, Martha's Vineyard — 2014",
                               .license = "CC-BY-4.0"};
    return &info;
}

static void write_spec(const spec *sp, const char *path)
{
    kelp_dataset_writer *w;
    TEST_OK(kelp_dataset_create(path, info_for(sp->task), &w));
    record_data *d = malloc(sizeof *d);
    assert_non_null(d);
    for (int split = 0; split < KELP_SPLIT_COUNT; split++) {
        if (sp->counts[split] < 0)
            continue;
        kelp_image_shape fixed = shape_of(sp, split, 0);
        TEST_OK(kelp_dataset_begin_split(w, (kelp_split)split, sp->variable ? NULL : &fixed));
        for (int64_t i = 0; i < sp->counts[split]; i++) {
            make_record(sp, split, i, d);
            TEST_OK(kelp_dataset_append(w, &d->rec));
        }
    }
    free(d);
    TEST_OK(kelp_dataset_writer_finish(w));
}

static void verify_record(kelp_dataset *ds, const spec *sp, int split, int64_t i, record_data *want)
{
    make_record(sp, split, i, want);
    kelp_image_shape shape;
    TEST_OK(kelp_dataset_image_shape(ds, (kelp_split)split, i, &shape));
    assert_memory_equal(&shape, &want->rec.shape, sizeof shape);
    uint8_t got[16 * 16 * 4];
    size_t bytes = (size_t)shape.h * shape.w * shape.c;
    TEST_OK(kelp_dataset_read_image(ds, (kelp_split)split, i, got, sizeof got));
    assert_memory_equal(got, want->pixels, bytes);
    assert_int_equal(kelp_dataset_image_id(ds, (kelp_split)split, i), id_of(split, i) < 0 ? i : id_of(split, i));
    if (sp->task == KELP_TASK_CLASSIFY)
        assert_int_equal(kelp_dataset_labels(ds, (kelp_split)split)[i], want->rec.label);
    if (sp->task == KELP_TASK_SEGMENT) {
        TEST_OK(kelp_dataset_read_mask(ds, (kelp_split)split, i, got, (size_t)shape.h * shape.w));
        assert_memory_equal(got, want->mask, (size_t)shape.h * shape.w);
    }
    if (sp->task == KELP_TASK_DETECT) {
        float boxes[4 * 4];
        int32_t labels[4];
        int n = -1;
        TEST_OK(kelp_dataset_read_boxes(ds, (kelp_split)split, i, boxes, labels, 4, &n));
        assert_int_equal(n, want->rec.n_boxes);
        assert_memory_equal(boxes, want->boxes, sizeof(float) * 4 * (size_t)n);
        assert_memory_equal(labels, want->box_labels, sizeof(int32_t) * (size_t)n);
    }
}

static void verify_spec(const spec *sp, const char *path)
{
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(path, &ds));
    assert_string_equal(kelp_dataset_path(ds), path);
    assert_int_equal(kelp_dataset_task(ds), sp->task);
    assert_int_equal(kelp_dataset_class_count(ds), N_CLASSES);
    for (int c = 0; c < N_CLASSES; c++)
        assert_string_equal(kelp_dataset_class_name(ds, c), CLASS_NAMES[c]);
    assert_null(kelp_dataset_class_name(ds, N_CLASSES));
    assert_string_equal(kelp_dataset_source(ds), info_for(sp->task)->source);
    assert_string_equal(kelp_dataset_license(ds), "CC-BY-4.0");
    record_data *want = malloc(sizeof *want);
    assert_non_null(want);
    for (int split = 0; split < KELP_SPLIT_COUNT; split++) {
        int64_t n = sp->counts[split] < 0 ? 0 : sp->counts[split];
        assert_int_equal(kelp_dataset_count(ds, (kelp_split)split), n);
        kelp_image_shape fixed;
        bool is_fixed = kelp_dataset_fixed_shape(ds, (kelp_split)split, &fixed);
        assert_int_equal(is_fixed, !sp->variable && sp->counts[split] >= 0);
        if (is_fixed)
            assert_int_equal(fixed.c, sp->channels);
        if (sp->task != KELP_TASK_CLASSIFY)
            assert_null(kelp_dataset_labels(ds, (kelp_split)split));
        for (int64_t i = 0; i < n; i++)
            verify_record(ds, sp, split, i, want);
    }
    free(want);
    kelp_dataset_close(ds);
}

static void round_trip(const spec *sp)
{
    scratch s;
    scratch_make(&s);
    write_spec(sp, s.target);
    assert_int_equal(count_entries(s.dir), 1);
    verify_spec(sp, s.target);
    scratch_remove(&s);
}

/* ---------------------------------------------------------------- round trips */

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(kelp_task_name(KELP_TASK_SEGMENT), "segment");
    assert_string_equal(kelp_split_name(KELP_SPLIT_VAL), "val");
    kelp_split split = KELP_SPLIT_TRAIN;
    TEST_OK(kelp_split_parse("test", &split));
    assert_int_equal(split, KELP_SPLIT_TEST);
    TEST_FAILS_WITH(kelp_split_parse("validation", &split), KELP_ERR_INVALID_ARG, "validation");
}

static void test_classify_fixed(void **state)
{
    (void)state;
    round_trip(&(spec){KELP_TASK_CLASSIFY, false, 3, {7, 3, 2}});
}

static void test_classify_variable(void **state)
{
    (void)state;
    round_trip(&(spec){KELP_TASK_CLASSIFY, true, 1, {9, -1, 4}});
}

static void test_segment_fixed(void **state)
{
    (void)state;
    round_trip(&(spec){KELP_TASK_SEGMENT, false, 3, {5, 2, -1}});
}

static void test_segment_variable(void **state)
{
    (void)state;
    round_trip(&(spec){KELP_TASK_SEGMENT, true, 4, {6, 3, 3}});
}

static void test_detect_fixed(void **state)
{
    (void)state;
    round_trip(&(spec){KELP_TASK_DETECT, false, 3, {8, -1, 3}});
}

static void test_detect_variable(void **state)
{
    (void)state;
    round_trip(&(spec){KELP_TASK_DETECT, true, 2, {-1, 7, 5}});
}

static void test_empty_split(void **state)
{
    (void)state;
    round_trip(&(spec){KELP_TASK_DETECT, true, 3, {0, 2, -1}});
    round_trip(&(spec){KELP_TASK_CLASSIFY, false, 1, {3, 0, 0}});
}

/* 65536 names are over HDF5's 64 KiB compact attribute limit: the writer must store them densely. */
static void test_many_class_names(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    int n = KELP_DATASET_MAX_CLASSES;
    char **names = malloc(sizeof(char *) * (size_t)n);
    assert_non_null(names);
    for (int i = 0; i < n; i++) {
        names[i] = malloc(24);
        snprintf(names[i], 24, "class-%d", i);
    }
    kelp_dataset_info info = {.task = KELP_TASK_CLASSIFY, .class_names = (const char *const *)names, .class_count = n};
    kelp_dataset_writer *w;
    TEST_OK(kelp_dataset_create(s.target, &info, &w));
    uint8_t pixel = 9;
    TEST_OK(kelp_dataset_begin_split(w, KELP_SPLIT_TRAIN, NULL));
    TEST_OK(kelp_dataset_append(w, &(kelp_dataset_record){.pixels = &pixel, .shape = {1, 1, 1}, .label = n - 1}));
    TEST_OK(kelp_dataset_writer_finish(w));
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(s.target, &ds));
    assert_int_equal(kelp_dataset_class_count(ds), n);
    assert_string_equal(kelp_dataset_class_name(ds, n - 1), names[n - 1]);
    assert_int_equal(kelp_dataset_labels(ds, KELP_SPLIT_TRAIN)[0], n - 1);
    assert_string_equal(kelp_dataset_source(ds), "");
    kelp_dataset_close(ds);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    scratch_remove(&s);
}

/* ---------------------------------------------------------------- atomicity */

static void write_small(const char *path, int64_t count)
{
    write_spec(&(spec){KELP_TASK_CLASSIFY, false, 1, {count, -1, -1}}, path);
}

static void test_abort_leaves_nothing(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    const spec sp = {KELP_TASK_CLASSIFY, false, 1, {2, -1, -1}};
    record_data d;
    make_record(&sp, 0, 0, &d);
    kelp_dataset_writer *w;
    TEST_OK(kelp_dataset_create(s.target, info_for(KELP_TASK_CLASSIFY), &w));
    TEST_OK(kelp_dataset_begin_split(w, KELP_SPLIT_TRAIN, &d.rec.shape));
    TEST_OK(kelp_dataset_append(w, &d.rec));
    assert_int_equal(count_entries(s.dir), 1); /* the temp file */
    kelp_dataset_writer_abort(w);
    assert_int_equal(count_entries(s.dir), 0);
    kelp_dataset_writer_abort(NULL);

    /* An existing dataset survives an aborted rewrite untouched. */
    write_small(s.target, 3);
    TEST_OK(kelp_dataset_create(s.target, info_for(KELP_TASK_CLASSIFY), &w));
    TEST_OK(kelp_dataset_begin_split(w, KELP_SPLIT_TRAIN, NULL));
    kelp_dataset_writer_abort(w);
    assert_int_equal(count_entries(s.dir), 1);
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(s.target, &ds));
    assert_int_equal(kelp_dataset_count(ds, KELP_SPLIT_TRAIN), 3);
    kelp_dataset_close(ds);
    scratch_remove(&s);
}

static void test_finish_replaces_atomically(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    FILE *f = fopen(s.target, "wb");
    assert_non_null(f);
    fputs("an old, unrelated file", f);
    fclose(f);
    write_small(s.target, 4);
    assert_int_equal(count_entries(s.dir), 1);
    write_small(s.target, 2);
    assert_int_equal(count_entries(s.dir), 1);
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(s.target, &ds));
    assert_int_equal(kelp_dataset_count(ds, KELP_SPLIT_TRAIN), 2);
    kelp_dataset_close(ds);
    scratch_remove(&s);
}

/* ---------------------------------------------------------------- writer validation */

static kelp_dataset_writer *writer_at_record_2(const char *path, kelp_task task, const kelp_image_shape *fixed,
                                               record_data *d)
{
    const spec sp = {task, fixed == NULL, 3, {0, 0, 0}};
    kelp_dataset_writer *w;
    TEST_OK(kelp_dataset_create(path, info_for(task), &w));
    TEST_OK(kelp_dataset_begin_split(w, KELP_SPLIT_VAL, fixed));
    for (int i = 0; i < 2; i++) {
        make_record(&sp, KELP_SPLIT_VAL, i, d);
        if (fixed)
            d->rec.shape = *fixed;
        TEST_OK(kelp_dataset_append(w, &d->rec));
    }
    make_record(&sp, KELP_SPLIT_VAL, 2, d);
    if (fixed)
        d->rec.shape = *fixed;
    return w;
}

/* A rejected record is not written: the writer goes on and the file holds only the good records. */
static void finish_with_three(kelp_dataset_writer *w, record_data *d, const char *path)
{
    TEST_OK(kelp_dataset_append(w, &d->rec));
    TEST_OK(kelp_dataset_writer_finish(w));
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(path, &ds));
    assert_int_equal(kelp_dataset_count(ds, KELP_SPLIT_VAL), 3);
    kelp_dataset_close(ds);
}

static void test_writer_rejects_bad_label(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    record_data d;
    kelp_dataset_writer *w = writer_at_record_2(s.target, KELP_TASK_CLASSIFY, NULL, &d);
    int32_t good = d.rec.label;
    d.rec.label = N_CLASSES;
    TEST_FAILS_WITH(kelp_dataset_append(w, &d.rec), KELP_ERR_INVALID_ARG, "split 'val' record 2: label 4");
    d.rec.label = -1;
    TEST_FAILS_WITH(kelp_dataset_append(w, &d.rec), KELP_ERR_INVALID_ARG, "label -1 is out of range [0, 4)");
    assert_non_null(strstr(kelp_last_error(), s.target));
    d.rec.label = good;
    finish_with_three(w, &d, s.target);
    scratch_remove(&s);
}

static void test_writer_rejects_bad_shapes(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    record_data d;
    kelp_dataset_writer *w = writer_at_record_2(s.target, KELP_TASK_CLASSIFY, NULL, &d);
    kelp_image_shape good = d.rec.shape;
    d.rec.shape.h = KELP_DATASET_MAX_SIDE + 1;
    TEST_FAILS_WITH(kelp_dataset_append(w, &d.rec), KELP_ERR_SHAPE, "split 'val' record 2: shape 16385");
    d.rec.shape = good;
    d.rec.shape.w = 0;
    TEST_FAILS_WITH(kelp_dataset_append(w, &d.rec), KELP_ERR_SHAPE, "outside the caps");
    d.rec.shape = good;
    d.rec.shape.c = KELP_DATASET_MAX_CHANNELS + 1;
    TEST_FAILS_WITH(kelp_dataset_append(w, &d.rec), KELP_ERR_SHAPE, "record 2");
    d.rec.shape = good;
    d.rec.shape.c = 1;
    TEST_FAILS_WITH(kelp_dataset_append(w, &d.rec), KELP_ERR_SHAPE, "1 channels, but the split's images have 3");
    d.rec.shape = good;
    d.rec.pixels = NULL;
    TEST_FAILS_WITH(kelp_dataset_append(w, &d.rec), KELP_ERR_INVALID_ARG, "record 2: pixels is NULL");
    d.rec.pixels = d.pixels;
    finish_with_three(w, &d, s.target);

    const kelp_image_shape fixed = {4, 4, 3};
    w = writer_at_record_2(s.target, KELP_TASK_CLASSIFY, &fixed, &d);
    d.rec.shape = (kelp_image_shape){4, 5, 3};
    TEST_FAILS_WITH(kelp_dataset_append(w, &d.rec), KELP_ERR_SHAPE, "record 2: shape 4 x 5 x 3 differs");
    kelp_dataset_writer_abort(w);
    scratch_remove(&s);
}

static void test_writer_rejects_bad_masks(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    record_data d;
    kelp_dataset_writer *w = writer_at_record_2(s.target, KELP_TASK_SEGMENT, NULL, &d);
    d.rec.mask = NULL;
    TEST_FAILS_WITH(kelp_dataset_append(w, &d.rec), KELP_ERR_INVALID_ARG, "record 2: a segment record needs a mask");
    d.rec.mask = d.mask;
    uint8_t keep = d.mask[1];
    d.mask[1] = N_CLASSES;
    TEST_FAILS_WITH(kelp_dataset_append(w, &d.rec), KELP_ERR_INVALID_ARG, "mask pixel (0, 1) has class 4");
    d.mask[1] = keep;
    finish_with_three(w, &d, s.target);
    scratch_remove(&s);
}

static void test_writer_rejects_bad_boxes(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    record_data d;
    kelp_dataset_writer *w = writer_at_record_2(s.target, KELP_TASK_DETECT, NULL, &d);
    d.rec.n_boxes = 2;
    float x1 = d.boxes[4];
    d.boxes[4] = d.boxes[6] + 1.0f;
    TEST_FAILS_WITH(kelp_dataset_append(w, &d.rec), KELP_ERR_INVALID_ARG, "split 'val' record 2: box 1");
    assert_non_null(strstr(kelp_last_error(), "x1 > x2"));
    d.boxes[4] = x1;
    d.boxes[3] = NAN;
    TEST_FAILS_WITH(kelp_dataset_append(w, &d.rec), KELP_ERR_NUMERIC, "box 0 is not finite");
    d.boxes[3] = d.boxes[1] + 1.0f;
    d.box_labels[1] = N_CLASSES;
    TEST_FAILS_WITH(kelp_dataset_append(w, &d.rec), KELP_ERR_INVALID_ARG, "box 1 has label 4");
    d.box_labels[1] = 0;
    d.rec.n_boxes = -1;
    TEST_FAILS_WITH(kelp_dataset_append(w, &d.rec), KELP_ERR_INVALID_ARG, "-1 boxes");
    d.rec.n_boxes = 2;
    finish_with_three(w, &d, s.target);
    scratch_remove(&s);
}

static void test_writer_misuse(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    kelp_dataset_writer *w;
    kelp_dataset_info info = *info_for(KELP_TASK_CLASSIFY);
    info.class_count = 0;
    TEST_FAILS_WITH(kelp_dataset_create(s.target, &info, &w), KELP_ERR_INVALID_ARG, "0 classes");
    assert_null(w);
    const char *bad_utf8[] = {"ok", "\xC3\x28"};
    info = (kelp_dataset_info){.task = KELP_TASK_DETECT, .class_names = bad_utf8, .class_count = 2};
    TEST_FAILS_WITH(kelp_dataset_create(s.target, &info, &w), KELP_ERR_INVALID_ARG, "class name 1 is not valid UTF-8");
    const char *empty[] = {""};
    info.class_names = empty;
    info.class_count = 1;
    TEST_FAILS_WITH(kelp_dataset_create(s.target, &info, &w), KELP_ERR_INVALID_ARG, "class name 0 is empty");
    char long_name[KELP_DATASET_MAX_NAME + 2];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    const char *too_long[] = {long_name};
    info.class_names = too_long;
    TEST_FAILS_WITH(kelp_dataset_create(s.target, &info, &w), KELP_ERR_INVALID_ARG, "longer than 256 bytes");
    info = *info_for(KELP_TASK_SEGMENT);
    info.class_count = 256;
    TEST_FAILS_WITH(kelp_dataset_create(s.target, &info, &w), KELP_ERR_INVALID_ARG, "segment dataset has 1 to 255");
    assert_int_equal(count_entries(s.dir), 0);

    TEST_OK(kelp_dataset_create(s.target, info_for(KELP_TASK_CLASSIFY), &w));
    uint8_t pixel = 1;
    kelp_dataset_record rec = {.pixels = &pixel, .shape = {1, 1, 1}};
    TEST_FAILS_WITH(kelp_dataset_append(w, &rec), KELP_ERR_INVALID_ARG, "before kelp_dataset_begin_split");
    TEST_FAILS_WITH(kelp_dataset_begin_split(w, KELP_SPLIT_TRAIN, &(kelp_image_shape){0, 4, 1}), KELP_ERR_SHAPE,
                    "fixed shape 0 x 4 x 1");
    TEST_OK(kelp_dataset_begin_split(w, KELP_SPLIT_TRAIN, NULL));
    TEST_OK(kelp_dataset_append(w, &rec));
    TEST_OK(kelp_dataset_begin_split(w, KELP_SPLIT_TEST, NULL));
    TEST_FAILS_WITH(kelp_dataset_begin_split(w, KELP_SPLIT_TRAIN, NULL), KELP_ERR_INVALID_ARG,
                    "split 'train' was already written");
    TEST_FAILS_WITH(kelp_dataset_begin_split(w, (kelp_split)7, NULL), KELP_ERR_INVALID_ARG, "unknown split 7");
    TEST_OK(kelp_dataset_writer_finish(w));
    TEST_FAILS_WITH(kelp_dataset_writer_finish(NULL), KELP_ERR_INVALID_ARG, "writer is NULL");

    TEST_FAILS_WITH(kelp_dataset_create("/nonexistent-dir-kelp/data.h5", info_for(KELP_TASK_CLASSIFY), &w),
                    KELP_ERR_IO, "/nonexistent-dir-kelp/data.h5");
    scratch_remove(&s);
}

/* ---------------------------------------------------------------- reader API */

static void test_reader_misuse(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    const spec det = {KELP_TASK_DETECT, false, 3, {6, -1, -1}};
    write_spec(&det, s.target);
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(s.target, &ds));
    uint8_t buf[5 * 7 * 3];
    TEST_FAILS_WITH(kelp_dataset_read_image(ds, KELP_SPLIT_TRAIN, 6, buf, sizeof buf), KELP_ERR_INVALID_ARG,
                    "image 6 is out of range (split 'train' has 6 images)");
    TEST_FAILS_WITH(kelp_dataset_read_image(ds, KELP_SPLIT_TRAIN, -1, buf, sizeof buf), KELP_ERR_INVALID_ARG,
                    "out of range");
    TEST_FAILS_WITH(kelp_dataset_read_image(ds, KELP_SPLIT_TRAIN, 0, buf, sizeof buf - 1), KELP_ERR_INVALID_ARG,
                    "needs 105 bytes; the buffer holds 104");
    TEST_FAILS_WITH(kelp_dataset_read_image(ds, KELP_SPLIT_VAL, 0, buf, sizeof buf), KELP_ERR_NOT_FOUND,
                    "has no split 'val'");
    TEST_FAILS_WITH(kelp_dataset_read_mask(ds, KELP_SPLIT_TRAIN, 0, buf, sizeof buf), KELP_ERR_INVALID_ARG,
                    "needs a segment dataset; this one is detect");
    assert_null(kelp_dataset_labels(ds, KELP_SPLIT_TRAIN));
    assert_int_equal(kelp_dataset_image_id(ds, KELP_SPLIT_TRAIN, 99), -1);
    float boxes[4];
    int32_t labels[1];
    int count = -1;
    /* record 3 of train has 3 boxes */
    TEST_FAILS_WITH(kelp_dataset_read_boxes(ds, KELP_SPLIT_TRAIN, 3, boxes, labels, 1, &count),
                    KELP_ERR_INVALID_ARG, "image 3 has 3 boxes; the buffers hold 1");
    assert_int_equal(count, 3);
    TEST_OK(kelp_dataset_read_boxes(ds, KELP_SPLIT_TRAIN, 0, NULL, NULL, 0, &count));
    assert_int_equal(count, 0);
    kelp_dataset_close(ds);
    kelp_dataset_close(NULL);
    TEST_FAILS_WITH(kelp_dataset_open(s.dir, &ds), KELP_ERR_FORMAT, "not an HDF5 file");
    scratch_remove(&s);
    TEST_FAILS_WITH(kelp_dataset_open(s.target, &ds), KELP_ERR_IO, "No such file");
    assert_null(ds);
}

/* ---------------------------------------------------------------- concurrency */

typedef struct reader_job {
    kelp_dataset *ds;
    const spec *sp;
    int first;
    int failures;
} reader_job;

static void *read_all(void *arg)
{
    reader_job *job = arg;
    record_data *want = malloc(sizeof *want);
    uint8_t got[16 * 16 * 4];
    for (int round = 0; want && round < 3; round++) {
        for (int k = 0; k < job->sp->counts[0]; k++) {
            int64_t i = (job->first + k) % job->sp->counts[0];
            make_record(job->sp, 0, i, want);
            size_t bytes = (size_t)want->rec.shape.h * want->rec.shape.w * want->rec.shape.c;
            if (kelp_dataset_read_image(job->ds, KELP_SPLIT_TRAIN, i, got, sizeof got) != KELP_OK ||
                memcmp(got, want->pixels, bytes) != 0)
                job->failures++;
        }
    }
    free(want);
    return NULL;
}

static void test_concurrent_reads(void **state)
{
    (void)state;
    scratch s;
    scratch_make(&s);
    const spec sp = {KELP_TASK_CLASSIFY, true, 3, {64, -1, -1}};
    write_spec(&sp, s.target);
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(s.target, &ds));
    pthread_t threads[4];
    reader_job jobs[4];
    for (int t = 0; t < 4; t++) {
        jobs[t] = (reader_job){ds, &sp, 16 * t, 0};
        assert_int_equal(pthread_create(&threads[t], NULL, read_all, &jobs[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(threads[t], NULL);
        assert_int_equal(jobs[t].failures, 0);
    }
    kelp_dataset_close(ds);
    scratch_remove(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_classify_fixed),
        cmocka_unit_test(test_classify_variable),
        cmocka_unit_test(test_segment_fixed),
        cmocka_unit_test(test_segment_variable),
        cmocka_unit_test(test_detect_fixed),
        cmocka_unit_test(test_detect_variable),
        cmocka_unit_test(test_empty_split),
        cmocka_unit_test(test_many_class_names),
        cmocka_unit_test(test_abort_leaves_nothing),
        cmocka_unit_test(test_finish_replaces_atomically),
        cmocka_unit_test(test_writer_rejects_bad_label),
        cmocka_unit_test(test_writer_rejects_bad_shapes),
        cmocka_unit_test(test_writer_rejects_bad_masks),
        cmocka_unit_test(test_writer_rejects_bad_boxes),
        cmocka_unit_test(test_writer_misuse),
        cmocka_unit_test(test_reader_misuse),
        cmocka_unit_test(test_concurrent_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
