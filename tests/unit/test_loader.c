/* io/loader: every record once per epoch, an order that depends only on (seed, epoch) whatever the thread count,
 * bit-exact resume, short last batches, masks/boxes/channels through the loader, a corrupt record reported with its
 * index, and destruction at any point (ASan catches leaks and hangs show as a timeout). */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/feed.h"
#include "io/dataset.h"
#include "io/loader.h"
#include "ref/test_util.h"

typedef struct spec {
    kelp_task task;
    int n;
    int h, w, c;
    bool variable; /* sides grow with the index: h + i % 3, w + i % 4 */
} spec;

/* Image i's pixel (y, x, ch): a value that changes with every coordinate and with the index. */
static uint8_t pixel_value(int64_t i, int y, int x, int ch)
{
    return (uint8_t)(i * 37 + y * 11 + x * 7 + ch * 5);
}

static void record_shape(const spec *sp, int i, kelp_image_shape *shape)
{
    shape->h = (uint32_t)(sp->h + (sp->variable ? i % 3 : 0));
    shape->w = (uint32_t)(sp->w + (sp->variable ? i % 4 : 0));
    shape->c = (uint32_t)sp->c;
}

static void append_record(kelp_dataset_writer *w, const spec *sp, int i)
{
    kelp_image_shape shape;
    record_shape(sp, i, &shape);
    size_t plane = (size_t)shape.h * shape.w;
    uint8_t *pixels = malloc(plane * shape.c), *mask = malloc(plane);
    assert_non_null(pixels);
    assert_non_null(mask);
    for (int y = 0; y < (int)shape.h; y++)
        for (int x = 0; x < (int)shape.w; x++) {
            for (int ch = 0; ch < (int)shape.c; ch++)
                pixels[((size_t)y * shape.w + x) * shape.c + ch] = pixel_value(i, y, x, ch);
            mask[(size_t)y * shape.w + x] = (uint8_t)((y + x + i) % 3);
        }
    const float boxes[8] = {1, 1, 3, 4, 0, 0, (float)shape.w, (float)shape.h};
    const int32_t box_labels[2] = {i % 3, (i + 1) % 3};
    kelp_dataset_record rec = {.pixels = pixels, .shape = shape, .label = i % 3, .image_id = 1000 + i};
    if (sp->task == KELP_TASK_SEGMENT)
        rec.mask = mask;
    if (sp->task == KELP_TASK_DETECT)
        rec.boxes = boxes, rec.box_labels = box_labels, rec.n_boxes = 1 + i % 2;
    TEST_OK(kelp_dataset_append(w, &rec));
    free(pixels);
    free(mask);
}

static void write_dataset(const char *path, const spec *sp)
{
    const char *names[3] = {"copepod", "diatom", "detritus"};
    kelp_dataset_info info = {.task = sp->task, .class_names = names, .class_count = 3, .source = "test_loader"};
    kelp_dataset_writer *w;
    TEST_OK(kelp_dataset_create(path, &info, &w));
    kelp_image_shape fixed = {(uint32_t)sp->h, (uint32_t)sp->w, (uint32_t)sp->c};
    TEST_OK(kelp_dataset_begin_split(w, KELP_SPLIT_TRAIN, sp->variable ? NULL : &fixed));
    for (int i = 0; i < sp->n; i++)
        append_record(w, sp, i);
    TEST_OK(kelp_dataset_writer_finish(w));
}

static kelp_dataset *open_dataset(const char *path, const spec *sp)
{
    write_dataset(path, sp);
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(path, &ds));
    return ds;
}

/* Everything one epoch delivered, concatenated. */
typedef struct epoch_log {
    int batches, samples;
    int sizes[64];
    int64_t indices[256];
    uint8_t pixels[256 * 8 * 8 * 3];
    float images[256 * 8 * 8 * 3];
} epoch_log;

static void run_epoch(kelp_loader *l, int64_t epoch, int64_t first_batch, epoch_log *log)
{
    memset(log, 0, sizeof *log);
    TEST_OK(kelp_loader_start_epoch(l, epoch, first_batch));
    const kelp_batch *b;
    for (;;) {
        TEST_OK(kelp_loader_next(l, &b));
        if (!b)
            break;
        assert_int_equal(b->epoch, epoch);
        assert_int_equal(b->number, first_batch + log->batches);
        size_t values = (size_t)b->h * b->w * b->c;
        assert_true((size_t)(log->samples + b->n) * values <= sizeof log->pixels);
        memcpy(&log->indices[log->samples], b->indices, (size_t)b->n * sizeof *b->indices);
        memcpy(&log->pixels[log->samples * values], b->pixels, b->n * values);
        memcpy(&log->images[log->samples * values], b->images, b->n * values * sizeof(float));
        log->sizes[log->batches++] = b->n;
        log->samples += b->n;
    }
    TEST_OK(kelp_loader_next(l, &b)); /* the end stays the end */
    assert_null(b);
}

static void assert_logs_equal(const epoch_log *a, const epoch_log *b, size_t values, const char *what)
{
    if (a->batches != b->batches || a->samples != b->samples)
        fail_msg("%s: %d batches / %d samples vs %d / %d", what, a->batches, a->samples, b->batches, b->samples);
    for (int i = 0; i < a->samples; i++)
        if (a->indices[i] != b->indices[i])
            fail_msg("%s: sample %d is record %lld vs %lld", what, i, (long long)a->indices[i],
                     (long long)b->indices[i]);
    if (memcmp(a->pixels, b->pixels, (size_t)a->samples * values) != 0)
        fail_msg("%s: pixels differ", what);
    if (memcmp(a->images, b->images, (size_t)a->samples * values * sizeof(float)) != 0)
        fail_msg("%s: normalized images differ", what);
}

static void assert_each_index_once(const epoch_log *log, int64_t count)
{
    int seen[256] = {0};
    for (int i = 0; i < log->samples; i++) {
        assert_in_range(log->indices[i], 0, count - 1);
        if (seen[log->indices[i]]++)
            fail_msg("record %lld delivered twice", (long long)log->indices[i]);
    }
}

static kelp_loader *make_loader(kelp_dataset *ds, const kelp_loader_config *cfg)
{
    kelp_loader *l;
    TEST_OK(kelp_loader_create(ds, cfg, &l));
    return l;
}

/* A training config on 8x8 outputs with every random op. */
static void train_config(kelp_loader_config *cfg, int batch, int threads)
{
    kelp_loader_config_init(cfg, KELP_SPLIT_TRAIN, batch, 8, 8);
    cfg->threads = threads;
    cfg->shuffle = true;
    cfg->seed = 77;
    cfg->augment.random_resized_crop = cfg->augment.hflip = cfg->augment.vflip = cfg->augment.rot90 = true;
    cfg->augment.brightness = cfg->augment.contrast = 0.3f;
    for (int c = 0; c < 3; c++)
        cfg->mean[c] = 0.5f, cfg->std[c] = 0.25f;
}

/* ------------------------------------------------------------------------------------------------------ tests */

static void test_every_index_once_per_epoch(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    spec sp = {KELP_TASK_CLASSIFY, 23, 9, 10, 3, true};
    kelp_dataset *ds = open_dataset(path, &sp);
    const int32_t *labels = kelp_dataset_labels(ds, KELP_SPLIT_TRAIN);
    for (int drop_last = 0; drop_last < 2; drop_last++) {
        kelp_loader_config cfg;
        train_config(&cfg, 5, 2);
        cfg.drop_last = drop_last;
        kelp_loader *l = make_loader(ds, &cfg);
        assert_int_equal(kelp_loader_batches_per_epoch(l), drop_last ? 4 : 5);
        static epoch_log log;
        for (int64_t epoch = 0; epoch < 2; epoch++) {
            run_epoch(l, epoch, 0, &log);
            assert_int_equal(log.batches, drop_last ? 4 : 5);
            assert_int_equal(log.samples, drop_last ? 20 : 23);
            assert_int_equal(log.sizes[log.batches - 1], drop_last ? 5 : 3);
            assert_each_index_once(&log, 23);
        }
        /* labels travel with their images */
        TEST_OK(kelp_loader_start_epoch(l, 0, 0));
        const kelp_batch *b;
        TEST_OK(kelp_loader_next(l, &b));
        for (int i = 0; i < b->n; i++)
            assert_int_equal(b->labels[i], labels[b->indices[i]]);
        assert_null(b->masks);
        assert_null(b->boxes);
        kelp_loader_destroy(l);
    }
    kelp_dataset_close(ds);
    remove(path);
}

/* pixels_only (a GPU's loader): the same pixels and no floats; the backend's prepare_images, through
 * kelp_feed_images, then gives exactly the loader's own floats, with ImageNet's mean and std (inexact divisions). */
static void test_pixels_only_feeds_the_same_values(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    spec sp = {KELP_TASK_CLASSIFY, 11, 9, 10, 3, true};
    kelp_dataset *ds = open_dataset(path, &sp);
    kelp_loader_config cfg;
    train_config(&cfg, 4, 2);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(cfg.mean, mean, sizeof mean);
    memcpy(cfg.std, std, sizeof std);
    kelp_loader *with_floats = make_loader(ds, &cfg);
    cfg.pixels_only = true;
    kelp_loader *pixels_only = make_loader(ds, &cfg);
    assert_false(kelp_feed_pixels_only(test_cpu_backend()));

    enum { VALUES = 4 * 8 * 8 * 3 };
    static float fed[VALUES], fed_floats[VALUES];
    kelp_tensor x = {.dtype = KELP_F32, .data = fed, .backend = test_cpu_backend()};
    kelp_tensor x_floats = x;
    x_floats.data = fed_floats;
    TEST_OK(kelp_loader_start_epoch(with_floats, 1, 0));
    TEST_OK(kelp_loader_start_epoch(pixels_only, 1, 0));
    int batches = 0;
    for (;;) {
        const kelp_batch *a, *b;
        TEST_OK(kelp_loader_next(with_floats, &a));
        TEST_OK(kelp_loader_next(pixels_only, &b));
        if (!a) {
            assert_null(b);
            break;
        }
        assert_non_null(b);
        assert_non_null(a->images);
        assert_null(b->images);
        assert_int_equal(a->n, b->n);
        size_t values = (size_t)a->n * 8 * 8 * 3;
        assert_memory_equal(a->pixels, b->pixels, values);
        x.shape = x_floats.shape = kelp_shape4(a->n, 8, 8, 3);
        TEST_OK(kelp_feed_images(pixels_only, b, &x));
        TEST_OK(kelp_feed_images(with_floats, a, &x_floats));
        assert_memory_equal(fed, a->images, values * sizeof(float));
        assert_memory_equal(fed_floats, a->images, values * sizeof(float));
        /* an input of another size is refused, not overrun */
        x.shape = kelp_shape4(a->n, 8, 7, 3);
        TEST_FAILS_WITH(kelp_feed_images(pixels_only, b, &x), KELP_ERR_SHAPE, "feed");
        batches++;
    }
    assert_int_equal(batches, 3);
    kelp_loader_destroy(with_floats);
    kelp_loader_destroy(pixels_only);
    kelp_dataset_close(ds);
    remove(path);
}

static void test_order_depends_only_on_seed_and_epoch(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    spec sp = {KELP_TASK_CLASSIFY, 30, 9, 10, 3, true};
    kelp_dataset *ds = open_dataset(path, &sp);
    kelp_loader_config one, three;
    train_config(&one, 4, 1);
    train_config(&three, 4, 3);
    one.prefetch = 1, three.prefetch = 5;
    kelp_loader *a = make_loader(ds, &one), *b = make_loader(ds, &three);
    static epoch_log la, lb, lc;
    run_epoch(a, 3, 0, &la);
    run_epoch(b, 3, 0, &lb);
    assert_logs_equal(&la, &lb, 8 * 8 * 3, "1 thread vs 3 threads");
    run_epoch(b, 4, 0, &lc);
    assert_memory_not_equal(la.indices, lc.indices, sizeof la.indices[0] * 30);
    /* the same record is augmented differently in another epoch */
    int in_a = 0, in_c = 0;
    while (la.indices[in_a] != 0)
        in_a++;
    while (lc.indices[in_c] != 0)
        in_c++;
    assert_memory_not_equal(&la.pixels[in_a * 8 * 8 * 3], &lc.pixels[in_c * 8 * 8 * 3], 8 * 8 * 3);
    run_epoch(b, 3, 0, &lc); /* back to epoch 3 on the same loader: the same again */
    assert_logs_equal(&la, &lc, 8 * 8 * 3, "epoch 3 twice");
    kelp_loader_destroy(b);
    three.seed = 78;
    b = make_loader(ds, &three);
    run_epoch(b, 3, 0, &lc);
    assert_memory_not_equal(la.indices, lc.indices, sizeof la.indices[0] * 30);
    kelp_loader_destroy(a);
    kelp_loader_destroy(b);
    kelp_dataset_close(ds);
    remove(path);
}

static void test_resume_continues_the_same_batches(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    spec sp = {KELP_TASK_CLASSIFY, 26, 9, 10, 3, true};
    kelp_dataset *ds = open_dataset(path, &sp);
    kelp_loader_config cfg;
    train_config(&cfg, 4, 2);
    kelp_loader *l = make_loader(ds, &cfg);
    static epoch_log full, tail;
    run_epoch(l, 2, 0, &full);
    assert_int_equal(full.batches, 7);

    /* interrupt after batch 3 of epoch 2 and read the position a checkpoint would store */
    TEST_OK(kelp_loader_start_epoch(l, 2, 0));
    const kelp_batch *b;
    for (int k = 0; k < 3; k++)
        TEST_OK(kelp_loader_next(l, &b));
    int64_t epoch, next;
    kelp_loader_position(l, &epoch, &next);
    assert_int_equal(epoch, 2);
    assert_int_equal(next, 3);
    kelp_loader_destroy(l);

    cfg.threads = 3; /* the resumed run may have another thread count */
    l = make_loader(ds, &cfg);
    run_epoch(l, epoch, next, &tail);
    assert_int_equal(tail.batches, 4);
    size_t values = 8 * 8 * 3, skipped = 12;
    assert_int_equal(tail.samples, full.samples - (int)skipped);
    assert_memory_equal(tail.indices, &full.indices[skipped], (size_t)tail.samples * sizeof tail.indices[0]);
    assert_memory_equal(tail.pixels, &full.pixels[skipped * values], (size_t)tail.samples * values);
    assert_memory_equal(tail.images, &full.images[skipped * values], (size_t)tail.samples * values * sizeof(float));

    run_epoch(l, 2, 7, &tail); /* resuming at the very end gives an empty epoch */
    assert_int_equal(tail.batches, 0);
    TEST_FAILS_WITH(kelp_loader_start_epoch(l, 2, 8), KELP_ERR_INVALID_ARG, "batch 8 of 7");
    kelp_loader_destroy(l);
    kelp_dataset_close(ds);
    remove(path);
}

/* Dataset order, identity fit: the batches hold exactly the written pixels, normalized by the formula. */
static void test_short_last_batch_in_dataset_order(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    spec sp = {KELP_TASK_CLASSIFY, 7, 8, 8, 3, false};
    kelp_dataset *ds = open_dataset(path, &sp);
    kelp_loader_config cfg;
    kelp_loader_config_init(&cfg, KELP_SPLIT_TRAIN, 3, 8, 8);
    cfg.mean[0] = 0.1f, cfg.std[0] = 0.5f;
    kelp_loader *l = make_loader(ds, &cfg);
    static epoch_log log;
    run_epoch(l, 0, 0, &log);
    assert_int_equal(log.batches, 3);
    assert_int_equal(log.sizes[0], 3);
    assert_int_equal(log.sizes[2], 1);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(log.indices[i], i);
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++)
                for (int ch = 0; ch < 3; ch++) {
                    size_t at = (((size_t)i * 8 + y) * 8 + x) * 3 + ch;
                    uint8_t want = pixel_value(i, y, x, ch);
                    assert_int_equal(log.pixels[at], want);
                    double norm = ch == 0 ? (want / 255.0 - 0.1) / 0.5 : want / 255.0;
                    test_assert_close(&log.images[at], &norm, 1, 1e-6, 1e-6, "normalized pixel");
                }
    }
    kelp_loader_destroy(l);
    kelp_dataset_close(ds);
    remove(path);
}

static void test_masks_boxes_and_channels(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    spec seg = {KELP_TASK_SEGMENT, 5, 6, 7, 1, false};
    kelp_dataset *ds = open_dataset(path, &seg);
    kelp_loader_config cfg;
    kelp_loader_config_init(&cfg, KELP_SPLIT_TRAIN, 5, 6, 7);
    cfg.augment.out_c = 3; /* gray dataset, RGB model */
    kelp_loader *l = make_loader(ds, &cfg);
    TEST_OK(kelp_loader_start_epoch(l, 0, 0));
    const kelp_batch *b;
    TEST_OK(kelp_loader_next(l, &b));
    assert_int_equal(b->c, 3);
    assert_null(b->labels);
    assert_non_null(b->masks);
    for (int i = 0; i < 5; i++)
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 7; x++) {
                size_t at = ((size_t)i * 6 + y) * 7 + x;
                assert_int_equal(b->masks[at], (y + x + i) % 3);
                for (int ch = 0; ch < 3; ch++)
                    assert_int_equal(b->pixels[at * 3 + ch], pixel_value(i, y, x, 0));
            }
    kelp_loader_destroy(l);
    kelp_dataset_close(ds);

    spec det = {KELP_TASK_DETECT, 4, 6, 7, 3, false};
    ds = open_dataset(path, &det);
    kelp_loader_config_init(&cfg, KELP_SPLIT_TRAIN, 4, 12, 14); /* twice the size: boxes double */
    cfg.max_boxes = 2;
    l = make_loader(ds, &cfg);
    TEST_OK(kelp_loader_start_epoch(l, 0, 0));
    TEST_OK(kelp_loader_next(l, &b));
    assert_null(b->labels);
    assert_null(b->masks);
    assert_int_equal(b->max_boxes, 2);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(b->box_counts[i], 1 + i % 2);
        const float want[8] = {2, 2, 6, 8, 0, 0, 14, 12};
        test_assert_close_f(&b->boxes[i * 8], want, 4 * (size_t)b->box_counts[i], 0, 1e-4, "box");
        assert_int_equal(b->box_labels[i * 2], i % 3);
    }
    kelp_loader_destroy(l);

    cfg.max_boxes = 1; /* record 1 has two boxes */
    l = make_loader(ds, &cfg);
    TEST_OK(kelp_loader_start_epoch(l, 0, 0));
    TEST_FAILS_WITH(kelp_loader_next(l, &b), KELP_ERR_SHAPE, "record 1");
    kelp_loader_destroy(l);
    kelp_dataset_close(ds);
    remove(path);
}

/* Overwrites the stored (compressed) chunk of image `index` with garbage, so that reading it fails. */
static void corrupt_image_chunk(const char *path, int index)
{
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(file >= 0);
    hid_t dset = H5Dopen2(file, "/train/images", H5P_DEFAULT);
    assert_true(dset >= 0);
    hsize_t offset[4] = {(hsize_t)index, 0, 0, 0};
    unsigned filter_mask = 0;
    haddr_t addr = 0;
    hsize_t size = 0;
    assert_true(H5Dget_chunk_info_by_coord(dset, offset, &filter_mask, &addr, &size) >= 0);
    H5Dclose(dset);
    H5Fclose(file);
    assert_true(size > 0);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, (long)addr, SEEK_SET), 0);
    for (hsize_t i = 0; i < size; i++)
        fputc(0xFF, f);
    assert_int_equal(fclose(f), 0);
}

static void test_corrupt_record_is_reported_with_its_index(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    spec sp = {KELP_TASK_CLASSIFY, 12, 8, 8, 3, false};
    write_dataset(path, &sp);
    corrupt_image_chunk(path, 5);
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(path, &ds));
    kelp_loader_config cfg;
    kelp_loader_config_init(&cfg, KELP_SPLIT_TRAIN, 2, 8, 8);
    cfg.threads = 3;
    kelp_loader *l = make_loader(ds, &cfg);
    TEST_OK(kelp_loader_start_epoch(l, 0, 0));
    const kelp_batch *b;
    for (int k = 0; k < 2; k++) { /* records 0..3 arrive */
        TEST_OK(kelp_loader_next(l, &b));
        assert_int_equal(b->indices[0], 2 * k);
    }
    for (int again = 0; again < 2; again++) {
        TEST_FAILS_WITH(kelp_loader_next(l, &b), KELP_ERR_FORMAT, "split 'train', record 5");
        assert_null(b);
        assert_non_null(strstr(kelp_last_error(), path));
    }
    kelp_loader_destroy(l);
    kelp_dataset_close(ds);
    remove(path);
}

static void test_destroy_at_any_point(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    spec sp = {KELP_TASK_CLASSIFY, 40, 9, 10, 3, true};
    kelp_dataset *ds = open_dataset(path, &sp);
    kelp_loader_config cfg;
    train_config(&cfg, 4, 3);
    cfg.prefetch = 2;
    kelp_loader_destroy(make_loader(ds, &cfg)); /* never started */
    kelp_loader *l = make_loader(ds, &cfg);
    TEST_OK(kelp_loader_start_epoch(l, 0, 0));
    kelp_loader_destroy(l); /* workers busy */
    l = make_loader(ds, &cfg);
    TEST_OK(kelp_loader_start_epoch(l, 0, 0));
    const kelp_batch *b;
    TEST_OK(kelp_loader_next(l, &b));
    TEST_OK(kelp_loader_start_epoch(l, 1, 2)); /* abandoning an epoch midway */
    TEST_OK(kelp_loader_next(l, &b));
    assert_int_equal(b->number, 2);
    kelp_loader_destroy(l); /* holding a batch, workers blocked on a full queue */
    kelp_loader_destroy(NULL);
    kelp_dataset_close(ds);
    remove(path);
}

static void test_rejects_bad_use(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    spec sp = {KELP_TASK_CLASSIFY, 3, 4, 4, 3, false};
    kelp_dataset *ds = open_dataset(path, &sp);
    kelp_loader_config cfg;
    kelp_loader *l = (kelp_loader *)&cfg;
    kelp_loader_config_init(&cfg, KELP_SPLIT_TRAIN, 0, 4, 4);
    TEST_FAILS_WITH(kelp_loader_create(ds, &cfg, &l), KELP_ERR_INVALID_ARG, "batch size 0");
    assert_null(l);
    kelp_loader_config_init(&cfg, KELP_SPLIT_VAL, 2, 4, 4);
    TEST_FAILS_WITH(kelp_loader_create(ds, &cfg, &l), KELP_ERR_INVALID_ARG, "'val' has no records");
    kelp_loader_config_init(&cfg, KELP_SPLIT_TRAIN, 2, 4, 4);
    cfg.std[1] = 0;
    TEST_FAILS_WITH(kelp_loader_create(ds, &cfg, &l), KELP_ERR_INVALID_ARG, "std");
    kelp_loader_config_init(&cfg, KELP_SPLIT_TRAIN, 2, 4, 4);
    cfg.augment.out_w = 0;
    TEST_FAILS_WITH(kelp_loader_create(ds, &cfg, &l), KELP_ERR_INVALID_ARG, "output size");
    assert_non_null(strstr(kelp_last_error(), path));
    kelp_loader_config_init(&cfg, KELP_SPLIT_TRAIN, 2, 4, 4);
    l = make_loader(ds, &cfg);
    const kelp_batch *b;
    TEST_FAILS_WITH(kelp_loader_next(l, &b), KELP_ERR_INVALID_ARG, "no epoch started");
    TEST_FAILS_WITH(kelp_loader_start_epoch(l, -1, 0), KELP_ERR_INVALID_ARG, "epoch -1");
    kelp_loader_destroy(l);
    kelp_dataset_close(ds);
    remove(path);
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* corrupt_image_chunk's HDF5 calls must not print */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_index_once_per_epoch),
        cmocka_unit_test(test_pixels_only_feeds_the_same_values),
        cmocka_unit_test(test_order_depends_only_on_seed_and_epoch),
        cmocka_unit_test(test_resume_continues_the_same_batches),
        cmocka_unit_test(test_short_last_batch_in_dataset_order),
        cmocka_unit_test(test_masks_boxes_and_channels),
        cmocka_unit_test(test_corrupt_record_is_reported_with_its_index),
        cmocka_unit_test(test_destroy_at_any_point),
        cmocka_unit_test(test_rejects_bad_use),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
