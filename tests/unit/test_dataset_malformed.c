/* io/dataset: the hardened reader against malformed files. Each case writes a valid file with the kelp writer,
 * breaks one rule with the raw HDF5 API (tests/ref/h5_craft.h), and asserts a format error whose message names
 * the file and the problem. kelp_dataset_check is tested on files with damaged records. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/dataset.h"
#include "ref/h5_craft.h"
#include "ref/test_util.h"

/* ---------------------------------------------------------------- the valid base files */

#define BASE_COUNT 4
static const char *const BASE_CLASSES[] = {"copepod", "diatom", "detritus"};
/* Variable layout: image i has this shape; offsets 0, 18, 66, 81, 99. */
static const kelp_image_shape VARIABLE_SHAPES[BASE_COUNT] = {{2, 3, 3}, {4, 4, 3}, {1, 5, 3}, {3, 2, 3}};
static const int32_t BASE_LABELS[BASE_COUNT] = {0, 1, 2, 1};

/* train: 4 images (4x4x3 fixed, or VARIABLE_SHAPES) of 3 classes; detect: image i has i boxes (6 in all). */
static void write_base_sized(const char *path, kelp_task task, bool variable, uint32_t side, int count)
{
    kelp_dataset_info info = {.task = task, .class_names = BASE_CLASSES, .class_count = 3};
    kelp_dataset_writer *w;
    TEST_OK(kelp_dataset_create(path, &info, &w));
    const kelp_image_shape fixed = {side, side, 3};
    TEST_OK(kelp_dataset_begin_split(w, KELP_SPLIT_TRAIN, variable ? NULL : &fixed));
    size_t max_pixels = (size_t)side * side > 16 ? (size_t)side * side : 16;
    uint8_t *pixels = malloc(3 * max_pixels), *mask = malloc(max_pixels);
    assert_true(pixels && mask);
    uint64_t seed = 42;
    for (size_t p = 0; p < 3 * max_pixels; p++)
        pixels[p] = (uint8_t)test_rand_u64(&seed);
    for (int i = 0; i < count; i++) {
        for (size_t p = 0; p < max_pixels; p++)
            mask[p] = (uint8_t)((p + (size_t)i) % 3);
        float boxes[3 * 4];
        int32_t box_labels[3];
        for (int b = 0; b < i % BASE_COUNT; b++) {
            boxes[4 * b] = boxes[4 * b + 1] = (float)b;
            boxes[4 * b + 2] = boxes[4 * b + 3] = (float)b + 1.5f;
            box_labels[b] = b;
        }
        kelp_dataset_record rec = {.pixels = pixels,
                                   .shape = variable ? VARIABLE_SHAPES[i % BASE_COUNT] : fixed,
                                   .label = BASE_LABELS[i % BASE_COUNT],
                                   .mask = mask,
                                   .boxes = boxes,
                                   .box_labels = box_labels,
                                   .n_boxes = i % BASE_COUNT,
                                   .image_id = -1};
        TEST_OK(kelp_dataset_append(w, &rec));
    }
    free(pixels);
    free(mask);
    TEST_OK(kelp_dataset_writer_finish(w));
}

static void write_base(const char *path, kelp_task task, bool variable)
{
    write_base_sized(path, task, variable, 4, BASE_COUNT);
}

static void assert_open_fails(const char *path, kelp_status status, const char *needle)
{
    kelp_dataset *ds = NULL;
    TEST_FAILS_WITH(kelp_dataset_open(path, &ds), status, needle);
    assert_null(ds);
    if (!strstr(kelp_last_error(), path))
        fail_msg("message \"%s\" does not name the file %s", kelp_last_error(), path);
}

typedef void (*tamper_fn)(hid_t file);

/* Writes a base file, applies `tamper` and expects kelp_dataset_open to refuse it with `needle`. */
static void expect_refused(kelp_task task, bool variable, tamper_fn tamper, const char *needle)
{
    const char *path = test_temp_path(".h5");
    write_base(path, task, variable);
    hid_t file = h5c_open_rw(path);
    tamper(file);
    h5c_close(file);
    assert_open_fails(path, KELP_ERR_FORMAT, needle);
    unlink(path);
}

static void put_1d(hid_t file, const char *path, hid_t type, hsize_t n, const void *data)
{
    h5c_put(file, path, type, 1, &n, H5P_DEFAULT, data);
}

/* ---------------------------------------------------------------- not a dataset file at all */

static void test_not_hdf5(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("label,image\n0,cat.png\n", f);
    fclose(f);
    assert_open_fails(path, KELP_ERR_FORMAT, "not an HDF5 file");
    unlink(path);
    assert_open_fails(path, KELP_ERR_IO, "No such file");
}

static void test_truncated(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    write_base(path, KELP_TASK_CLASSIFY, false);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    assert_int_equal(truncate(path, size / 2), 0);
    assert_open_fails(path, KELP_ERR_FORMAT, "truncated");
    unlink(path);
}

/* ---------------------------------------------------------------- root attributes */

static void drop_format(hid_t f)
{
    h5c_delete_attr(f, "format");
}

static void other_format(hid_t f)
{
    h5c_set_string(f, "format", "hdf5-images");
}

static void version_2(hid_t f)
{
    h5c_set_int(f, "format_version", 2);
}

static void version_string(hid_t f)
{
    h5c_set_string(f, "format_version", "1");
}

static void unknown_task(hid_t f)
{
    h5c_set_string(f, "task", "regress");
}

static void two_class_names(hid_t f)
{
    h5c_set_strings(f, "class_names", BASE_CLASSES, 2);
}

static void bad_utf8_class_name(hid_t f)
{
    const char *names[] = {"copepod", "di\xFF" "atom", "detritus"};
    h5c_set_strings(f, "class_names", names, 3);
}

static void no_class_names(hid_t f)
{
    h5c_delete_attr(f, "class_names");
}

static void empty_class_names(hid_t f)
{
    h5c_set_strings(f, "class_names", BASE_CLASSES, 0);
}

static void long_class_name(hid_t f)
{
    char name[KELP_DATASET_MAX_NAME + 2];
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    const char *names[] = {"copepod", "diatom", name};
    h5c_set_strings(f, "class_names", names, 3);
}

static void test_root_attributes(void **state)
{
    (void)state;
    expect_refused(KELP_TASK_CLASSIFY, false, drop_format, "has no 'format' attribute");
    expect_refused(KELP_TASK_CLASSIFY, false, other_format, "format is 'hdf5-images', not 'kelp-dataset'");
    expect_refused(KELP_TASK_CLASSIFY, false, version_2, "format_version 2 is not supported");
    expect_refused(KELP_TASK_CLASSIFY, false, version_string, "'format_version' is not an integer");
    expect_refused(KELP_TASK_CLASSIFY, false, unknown_task, "unknown task 'regress'");
    expect_refused(KELP_TASK_CLASSIFY, false, bad_utf8_class_name, "'class_names' entry 1 is not valid UTF-8");
    expect_refused(KELP_TASK_CLASSIFY, false, no_class_names, "has no 'class_names' attribute");
    expect_refused(KELP_TASK_CLASSIFY, false, empty_class_names, "attribute 'class_names' is empty");
    expect_refused(KELP_TASK_CLASSIFY, false, long_class_name, "'class_names' entry 2 is 257 bytes long, over the "
                                                               "cap of 256");
}

/* numpy bytes_ arrays become fixed-length strings; they read like h5py's variable-length ones. */
static void test_fixed_length_strings_accepted(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    write_base(path, KELP_TASK_CLASSIFY, false);
    hid_t f = h5c_open_rw(path);
    const char *names[] = {"cope", "diat", "x"};
    h5c_set_fixed_strings(f, "class_names", names, 3, 4);
    const char *task[] = {"classify"};
    h5c_set_fixed_strings(f, "task", task, 1, 12);
    h5c_close(f);
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(path, &ds));
    assert_string_equal(kelp_dataset_class_name(ds, 0), "cope");
    assert_string_equal(kelp_dataset_class_name(ds, 2), "x");
    assert_int_equal(kelp_dataset_task(ds), KELP_TASK_CLASSIFY);
    kelp_dataset_close(ds);
    unlink(path);
}

/* ---------------------------------------------------------------- images */

static void images_int16(hid_t f)
{
    const hsize_t dims[4] = {4, 4, 4, 3};
    h5c_put(f, "/train/images", H5T_STD_I16LE, 4, dims, H5P_DEFAULT, NULL);
}

static void images_float(hid_t f)
{
    const hsize_t dims[4] = {4, 4, 4, 3};
    h5c_put(f, "/train/images", H5T_IEEE_F32LE, 4, dims, H5P_DEFAULT, NULL);
}

static void images_rank_2(hid_t f)
{
    const hsize_t dims[2] = {4, 48};
    h5c_put(f, "/train/images", H5T_STD_U8LE, 2, dims, H5P_DEFAULT, NULL);
}

/* 4 x 100000 x 100000 x 3 bytes declared, nothing stored: the reader must refuse it from the dims alone. */
static void images_huge(hid_t f)
{
    const hsize_t dims[4] = {4, 100000, 100000, 3}, chunk[4] = {1, 64, 64, 3};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 4, chunk);
    h5c_put(f, "/train/images", H5T_STD_U8LE, 4, dims, dcpl, NULL);
    H5Pclose(dcpl);
}

static void images_five_channels(hid_t f)
{
    const hsize_t dims[4] = {4, 4, 4, 5};
    h5c_put(f, "/train/images", H5T_STD_U8LE, 4, dims, H5P_DEFAULT, NULL);
}

/* Within the caps, but one chunk of two 4096 x 4096 x 3 images (96 MiB) is over max(one image, 64 MiB). */
static void images_huge_chunks(hid_t f)
{
    const hsize_t dims[4] = {4, 4096, 4096, 3}, chunk[4] = {2, 4096, 4096, 3};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 4, chunk);
    h5c_put(f, "/train/images", H5T_STD_U8LE, 4, dims, dcpl, NULL);
    H5Pclose(dcpl);
}

static void images_and_flat(hid_t f)
{
    put_1d(f, "/train/images_flat", H5T_STD_U8LE, 192, NULL);
}

static void no_images(hid_t f)
{
    h5c_delete(f, "/train/images");
}

static void split_is_dataset(hid_t f)
{
    put_1d(f, "/val", H5T_STD_U8LE, 4, NULL);
}

static void test_images(void **state)
{
    (void)state;
    expect_refused(KELP_TASK_CLASSIFY, false, images_int16, "/train/images: dtype is int16, expected uint8");
    expect_refused(KELP_TASK_CLASSIFY, false, images_float, "/train/images: dtype is float32, expected uint8");
    expect_refused(KELP_TASK_CLASSIFY, false, images_rank_2, "/train/images: has rank 2, expected 4");
    expect_refused(KELP_TASK_CLASSIFY, false, images_huge, "/train/images: height 100000 is outside [1, 16384]");
    expect_refused(KELP_TASK_CLASSIFY, false, images_five_channels, "the channel count 5 is outside [1, 4]");
    expect_refused(KELP_TASK_CLASSIFY, false, images_huge_chunks, "chunks of 100663296 bytes are over the cap");
    expect_refused(KELP_TASK_CLASSIFY, false, images_and_flat, "/train: has both 'images' and 'images_flat'");
    expect_refused(KELP_TASK_CLASSIFY, false, no_images, "/train: has neither 'images' nor 'images_flat'");
    expect_refused(KELP_TASK_CLASSIFY, false, split_is_dataset, "/val: is not a group");
}

/* ---------------------------------------------------------------- labels */

static void label_3(hid_t f)
{
    const int32_t labels[BASE_COUNT] = {0, 1, 3, 1};
    put_1d(f, "/train/labels", H5T_STD_I32LE, BASE_COUNT, labels);
}

static void label_negative(hid_t f)
{
    const int32_t labels[BASE_COUNT] = {0, -1, 2, 1};
    put_1d(f, "/train/labels", H5T_STD_I32LE, BASE_COUNT, labels);
}

static void three_labels(hid_t f)
{
    put_1d(f, "/train/labels", H5T_STD_I32LE, 3, BASE_LABELS);
}

static void labels_int64(hid_t f)
{
    const int64_t labels[BASE_COUNT] = {0, 1, 2, 1};
    put_1d(f, "/train/labels", H5T_STD_I64LE, BASE_COUNT, labels);
}

static void no_labels(hid_t f)
{
    h5c_delete(f, "/train/labels");
}

static void test_labels(void **state)
{
    (void)state;
    expect_refused(KELP_TASK_CLASSIFY, false, label_3, "/train/labels: label 3 of image 2 is out of range [0, 3)");
    expect_refused(KELP_TASK_CLASSIFY, true, label_negative, "label -1 of image 1 is out of range [0, 3)");
    expect_refused(KELP_TASK_CLASSIFY, false, three_labels, "the label count (one per image) is 3, expected 4");
    expect_refused(KELP_TASK_CLASSIFY, false, labels_int64, "/train/labels: dtype is int64, expected int32");
    expect_refused(KELP_TASK_CLASSIFY, false, no_labels, "/train/labels: is missing");
    /* image 2's label is 2: with two class names it has no class. */
    expect_refused(KELP_TASK_CLASSIFY, false, two_class_names, "label 2 of image 2 is out of range [0, 2)");
}

/* Big-endian data is valid HDF5 and reads the same. */
static void test_big_endian_labels_accepted(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    write_base(path, KELP_TASK_CLASSIFY, false);
    hid_t f = h5c_open_rw(path);
    uint8_t be[BASE_COUNT][4] = {{0, 0, 0, 2}, {0, 0, 0, 0}, {0, 0, 0, 1}, {0, 0, 0, 2}};
    put_1d(f, "/train/labels", H5T_STD_I32BE, BASE_COUNT, be);
    h5c_close(f);
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(path, &ds));
    const int32_t *labels = kelp_dataset_labels(ds, KELP_SPLIT_TRAIN);
    assert_int_equal(labels[0], 2);
    assert_int_equal(labels[2], 1);
    kelp_dataset_close(ds);
    unlink(path);
}

/* ---------------------------------------------------------------- variable-size layout */

static void put_offsets(hid_t f, const uint64_t *offsets)
{
    put_1d(f, "/train/image_offsets", H5T_STD_U64LE, BASE_COUNT + 1, offsets);
}

static void offsets_start_5(hid_t f)
{
    put_offsets(f, (const uint64_t[]){5, 18, 66, 81, 99});
}

static void offsets_decrease(hid_t f)
{
    put_offsets(f, (const uint64_t[]){0, 18, 10, 81, 99});
}

static void flat_too_long(hid_t f)
{
    put_1d(f, "/train/images_flat", H5T_STD_U8LE, 120, NULL);
}

static void shape_inconsistent(hid_t f)
{
    const hsize_t dims[2] = {BASE_COUNT, 3};
    const uint32_t shapes[BASE_COUNT][3] = {{2, 3, 3}, {4, 5, 3}, {1, 5, 3}, {3, 2, 3}};
    h5c_put(f, "/train/image_shapes", H5T_STD_U32LE, 2, dims, H5P_DEFAULT, shapes);
}

static void shape_channels_differ(hid_t f)
{
    const hsize_t dims[2] = {BASE_COUNT, 3};
    const uint32_t shapes[BASE_COUNT][3] = {{2, 3, 3}, {4, 4, 3}, {1, 5, 1}, {3, 2, 3}};
    h5c_put(f, "/train/image_shapes", H5T_STD_U32LE, 2, dims, H5P_DEFAULT, shapes);
}

static void shape_too_wide(hid_t f)
{
    const hsize_t dims[2] = {BASE_COUNT, 3};
    const uint32_t shapes[BASE_COUNT][3] = {{2, 3, 3}, {4, 4, 3}, {1, 70000, 3}, {3, 2, 3}};
    h5c_put(f, "/train/image_shapes", H5T_STD_U32LE, 2, dims, H5P_DEFAULT, shapes);
}

static void offsets_count(hid_t f)
{
    put_1d(f, "/train/image_offsets", H5T_STD_U64LE, BASE_COUNT, (const uint64_t[]){0, 18, 66, 81});
}

static void test_variable_layout(void **state)
{
    (void)state;
    expect_refused(KELP_TASK_CLASSIFY, true, offsets_start_5, "/train/image_offsets: starts at 5, expected 0");
    expect_refused(KELP_TASK_CLASSIFY, true, offsets_decrease, "decreases at entry 2 (10 after 18)");
    expect_refused(KELP_TASK_CLASSIFY, true, flat_too_long, "ends at 99 but images_flat holds 120 bytes");
    expect_refused(KELP_TASK_CLASSIFY, true, shape_inconsistent,
                   "image 1 spans 48 bytes but its shape 4 x 5 x 3 in image_shapes needs 60");
    expect_refused(KELP_TASK_CLASSIFY, true, shape_channels_differ, "image 2 has 1 channels but image 0 has 3");
    expect_refused(KELP_TASK_CLASSIFY, true, shape_too_wide, "/train/image_shapes: image 2 is 1 x 70000 pixels");
    expect_refused(KELP_TASK_CLASSIFY, true, offsets_count, "the entry count (images + 1) is 4, expected 5");
}

/* ---------------------------------------------------------------- links and storage */

static void labels_external_link(hid_t f)
{
    h5c_delete(f, "/train/labels");
    assert_true(H5Lcreate_external("elsewhere.h5", "/labels", f, "/train/labels", H5P_DEFAULT, H5P_DEFAULT) >= 0);
}

static void labels_soft_link(hid_t f)
{
    h5c_delete(f, "/train/labels");
    assert_true(H5Lcreate_soft("/train/image_ids", f, "/train/labels", H5P_DEFAULT, H5P_DEFAULT) >= 0);
}

static void split_external_link(hid_t f)
{
    assert_true(H5Lcreate_external("elsewhere.h5", "/val", f, "/val", H5P_DEFAULT, H5P_DEFAULT) >= 0);
}

/* No bzip2 filter is registered (and plugins are off): H5Z_FLAG_OPTIONAL lets HDF5 create the dataset anyway. */
static void labels_unknown_filter(hid_t f)
{
    const hsize_t chunk = 2;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    assert_true(H5Pset_filter(dcpl, 307, H5Z_FLAG_OPTIONAL, 0, NULL) >= 0);
    const hsize_t n = BASE_COUNT;
    h5c_put(f, "/train/labels", H5T_STD_I32LE, 1, &n, dcpl, BASE_LABELS);
    H5Pclose(dcpl);
}

static void labels_external_storage(hid_t f)
{
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    assert_true(H5Pset_external(dcpl, "labels.raw", 0, BASE_COUNT * sizeof(int32_t)) >= 0);
    const hsize_t n = BASE_COUNT;
    h5c_put(f, "/train/labels", H5T_STD_I32LE, 1, &n, dcpl, NULL);
    H5Pclose(dcpl);
}

static void labels_virtual(hid_t f)
{
    const hsize_t n = BASE_COUNT;
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    assert_true(H5Pset_virtual(dcpl, space, "elsewhere.h5", "/labels", space) >= 0);
    h5c_put(f, "/train/labels", H5T_STD_I32LE, 1, &n, dcpl, NULL);
    H5Pclose(dcpl);
    H5Sclose(space);
}

static void test_links_and_storage(void **state)
{
    (void)state;
    expect_refused(KELP_TASK_CLASSIFY, false, labels_external_link, "/train/labels: is an external link");
    expect_refused(KELP_TASK_CLASSIFY, false, labels_soft_link, "/train/labels: is a soft link");
    expect_refused(KELP_TASK_CLASSIFY, false, split_external_link, "/val: is an external link");
    expect_refused(KELP_TASK_CLASSIFY, false, labels_unknown_filter, "/train/labels: uses filter 307");
    expect_refused(KELP_TASK_CLASSIFY, false, labels_external_storage, "/train/labels: uses external storage");
    expect_refused(KELP_TASK_CLASSIFY, false, labels_virtual, "/train/labels: is a virtual dataset");
}

/* ---------------------------------------------------------------- segment and detect */

static void mask_width_5(hid_t f)
{
    const hsize_t dims[3] = {BASE_COUNT, 4, 5};
    h5c_put(f, "/train/masks", H5T_STD_U8LE, 3, dims, H5P_DEFAULT, NULL);
}

static void masks_flat_short(hid_t f)
{
    put_1d(f, "/train/masks_flat", H5T_STD_U8LE, 32, NULL);
}

static void ignore_index_0(hid_t f)
{
    hid_t masks = H5Dopen2(f, "/train/masks", H5P_DEFAULT);
    h5c_set_int(masks, "ignore_index", 0);
    H5Dclose(masks);
}

static void many_segment_classes(hid_t f)
{
    static char names[256][16];
    const char *list[256];
    for (int i = 0; i < 256; i++) {
        snprintf(names[i], sizeof names[i], "c%d", i);
        list[i] = names[i];
    }
    h5c_set_strings(f, "class_names", list, 256);
}

static void box_offsets_short_end(hid_t f)
{
    put_1d(f, "/train/box_offsets", H5T_STD_U64LE, BASE_COUNT + 1, (const uint64_t[]){0, 0, 1, 3, 5});
}

static void box_offsets_decrease(hid_t f)
{
    put_1d(f, "/train/box_offsets", H5T_STD_U64LE, BASE_COUNT + 1, (const uint64_t[]){0, 2, 1, 3, 6});
}

static void box_labels_short(hid_t f)
{
    put_1d(f, "/train/box_labels", H5T_STD_I32LE, 5, (const int32_t[]){0, 0, 1, 0, 1});
}

static void boxes_three_columns(hid_t f)
{
    const hsize_t dims[2] = {6, 3};
    h5c_put(f, "/train/boxes", H5T_IEEE_F32LE, 2, dims, H5P_DEFAULT, NULL);
}

static void boxes_float64(hid_t f)
{
    const hsize_t dims[2] = {6, 4};
    h5c_put(f, "/train/boxes", H5T_IEEE_F64LE, 2, dims, H5P_DEFAULT, NULL);
}

static void ids_count(hid_t f)
{
    put_1d(f, "/train/image_ids", H5T_STD_I64LE, 2, (const int64_t[]){7, 8});
}

static void test_segment_and_detect(void **state)
{
    (void)state;
    expect_refused(KELP_TASK_SEGMENT, false, mask_width_5, "/train/masks: the mask width (its image's) is 5, "
                                                           "expected 4");
    expect_refused(KELP_TASK_SEGMENT, true, masks_flat_short, "/train/masks_flat: the byte count (the images' h * w "
                                                              "summed) is 32, expected 33");
    expect_refused(KELP_TASK_SEGMENT, false, ignore_index_0, "/train/masks: ignore_index is 0");
    expect_refused(KELP_TASK_SEGMENT, false, many_segment_classes, "at most 255 classes");
    expect_refused(KELP_TASK_DETECT, false, box_offsets_short_end, "/train/box_offsets: ends at 5 but boxes holds 6");
    expect_refused(KELP_TASK_DETECT, true, box_offsets_decrease, "/train/box_offsets: decreases at entry 2");
    expect_refused(KELP_TASK_DETECT, false, box_labels_short, "/train/box_labels: the box label count (one per box) "
                                                              "is 5, expected 6");
    expect_refused(KELP_TASK_DETECT, false, boxes_three_columns, "/train/boxes: the column count");
    expect_refused(KELP_TASK_DETECT, false, boxes_float64, "/train/boxes: dtype is float64, expected float32");
    expect_refused(KELP_TASK_DETECT, false, ids_count, "/train/image_ids: the id count (one per image) is 2");
}

/* ---------------------------------------------------------------- records and kelp_dataset_check */

typedef struct reports {
    int count;
    char lines[8][512];
    char last[512];
} reports;

static void collect(void *user, const char *problem)
{
    reports *r = user;
    if (r->count < 8)
        snprintf(r->lines[r->count], sizeof r->lines[0], "%s", problem);
    snprintf(r->last, sizeof r->last, "%s", problem);
    r->count++;
}

static void assert_reported(const reports *r, int index, const char *needle)
{
    if (!strstr(r->lines[index], needle))
        fail_msg("report %d \"%s\" does not mention \"%s\"", index, r->lines[index], needle);
}

/* Breaks the zlib header of a stored chunk, so that inflate refuses it. */
static void damage_chunk(const char *path, const char *dataset, const hsize_t *start)
{
    uint64_t offset, size;
    h5c_chunk_location(path, dataset, start, &offset, &size);
    const uint8_t garbage[2] = {0xFF, 0xFF};
    h5c_poke(path, offset, garbage, sizeof garbage);
}

static void test_check_reports_every_bad_record(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    write_base_sized(path, KELP_TASK_SEGMENT, false, 16, 8);
    reports r = {0};
    assert_int_equal(kelp_dataset_check(path, collect, &r), 0);
    assert_int_equal(r.count, 0);

    damage_chunk(path, "/train/images", (const hsize_t[]){1, 0, 0, 0});
    damage_chunk(path, "/train/masks", (const hsize_t[]){5, 0, 0});
    hid_t f = h5c_open_rw(path);
    const uint8_t class_200 = 200;
    h5c_write_elements(f, "/train/masks", H5T_STD_U8LE, 3 * 256 + 17, 1, &class_200);
    h5c_close(f);

    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(path, &ds));
    uint8_t buf[16 * 16 * 3];
    TEST_FAILS_WITH(kelp_dataset_read_image(ds, KELP_SPLIT_TRAIN, 1, buf, sizeof buf), KELP_ERR_FORMAT,
                    "/train/images: cannot read image 1 (deflate: ");
    TEST_OK(kelp_dataset_read_image(ds, KELP_SPLIT_TRAIN, 2, buf, sizeof buf));
    TEST_FAILS_WITH(kelp_dataset_read_mask(ds, KELP_SPLIT_TRAIN, 3, buf, sizeof buf), KELP_ERR_FORMAT,
                    "mask 3 has class 200 at pixel (1, 1)");
    kelp_dataset_close(ds);

    r = (reports){0};
    assert_int_equal(kelp_dataset_check(path, collect, &r), 3);
    assert_int_equal(r.count, 3);
    assert_reported(&r, 0, "cannot read image 1");
    assert_reported(&r, 1, "mask 3 has class 200");
    assert_reported(&r, 2, "cannot read mask 5");
    for (int i = 0; i < 3; i++)
        assert_non_null(strstr(r.lines[i], path));
    unlink(path);
}

static void test_check_reports_bad_boxes(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    write_base(path, KELP_TASK_DETECT, true);
    hid_t f = h5c_open_rw(path);
    /* Boxes 1-2 belong to image 2, 3-5 to image 3. */
    const float inverted[4] = {5, 0, 1, 1};
    h5c_write_elements(f, "/train/boxes", H5T_NATIVE_FLOAT, 2 * 4, 4, inverted);
    const int32_t label_9 = 9;
    h5c_write_elements(f, "/train/box_labels", H5T_NATIVE_INT32, 4, 1, &label_9);
    h5c_close(f);
    reports r = {0};
    assert_int_equal(kelp_dataset_check(path, collect, &r), 2);
    assert_reported(&r, 0, "/train/boxes: image 2 box 1 (5, 0, 1, 1) has x1 > x2");
    assert_reported(&r, 1, "/train/box_labels: image 3 box 1 has label 9, out of range [0, 3)");
    unlink(path);
}

static void test_check_caps_reports(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    write_base_sized(path, KELP_TASK_SEGMENT, false, 1, 1005);
    hid_t f = h5c_open_rw(path);
    uint8_t bad[1005];
    memset(bad, 7, sizeof bad);
    const hsize_t dims[3] = {1005, 1, 1};
    h5c_put(f, "/train/masks", H5T_STD_U8LE, 3, dims, H5P_DEFAULT, bad);
    h5c_close(f);
    reports r = {0};
    assert_int_equal(kelp_dataset_check(path, collect, &r), 1005);
    assert_int_equal(r.count, 1001);
    assert_string_equal(r.last, "and 5 more problems");
    unlink(path);
}

static void test_check_unopenable(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    write_base(path, KELP_TASK_CLASSIFY, false);
    hid_t f = h5c_open_rw(path);
    label_3(f);
    h5c_close(f);
    reports r = {0};
    assert_int_equal(kelp_dataset_check(path, collect, &r), -1);
    assert_int_equal(r.count, 0);
    assert_non_null(strstr(kelp_last_error(), "label 3 of image 2"));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_hdf5),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_root_attributes),
        cmocka_unit_test(test_fixed_length_strings_accepted),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_big_endian_labels_accepted),
        cmocka_unit_test(test_variable_layout),
        cmocka_unit_test(test_links_and_storage),
        cmocka_unit_test(test_segment_and_detect),
        cmocka_unit_test(test_check_reports_every_bad_record),
        cmocka_unit_test(test_check_reports_bad_boxes),
        cmocka_unit_test(test_check_caps_reports),
        cmocka_unit_test(test_check_unopenable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
