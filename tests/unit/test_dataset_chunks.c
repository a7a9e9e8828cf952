/* Reading records by their raw chunks (io/dataset_chunks.c): the same bytes as H5Dread for both layouts and images
 * that span several chunks, H5Dread for layouts other writers produce (shuffle, unfiltered edge chunks), chunks
 * stored without their filter, and damaged chunks refused with a message that names the file and the image. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "io/dataset.h"
#include "ref/h5_craft.h"
#include "ref/test_util.h"

#define COUNT 5

static const char *const CLASSES[] = {"a", "b"};

/* Sides around 100 pixels: a variable-size image spans two to four of the writer's 16 KiB chunks. */
static kelp_image_shape shape_of(bool variable, int i)
{
    return variable ? (kelp_image_shape){(uint32_t)(90 + 7 * i), (uint32_t)(101 - 5 * i), 3}
                    : (kelp_image_shape){64, 48, 3};
}

static void write_file(const char *path, bool variable)
{
    kelp_dataset_info info = {.task = KELP_TASK_CLASSIFY, .class_names = CLASSES, .class_count = 2};
    kelp_dataset_writer *w;
    TEST_OK(kelp_dataset_create(path, &info, &w));
    const kelp_image_shape fixed = shape_of(false, 0);
    TEST_OK(kelp_dataset_begin_split(w, KELP_SPLIT_TRAIN, variable ? NULL : &fixed));
    uint64_t seed = 5;
    for (int i = 0; i < COUNT; i++) {
        kelp_image_shape s = shape_of(variable, i);
        size_t n = (size_t)s.h * s.w * s.c;
        uint8_t *pixels = malloc(n);
        assert_non_null(pixels);
        for (size_t p = 0; p < n; p++) /* compressible, but not trivially */
            pixels[p] = (uint8_t)((p / 7) + (test_rand_u64(&seed) & 3));
        kelp_dataset_record rec = {.pixels = pixels, .shape = s, .label = i % 2, .image_id = -1};
        TEST_OK(kelp_dataset_append(w, &rec));
        free(pixels);
    }
    TEST_OK(kelp_dataset_writer_finish(w));
}

/* Image i of the file as H5Dread gives it. */
static uint8_t *h5_image(const char *path, bool variable, int i, size_t *bytes)
{
    hid_t f = h5c_open_rw(path);
    hid_t d = H5Dopen2(f, variable ? "/train/images_flat" : "/train/images", H5P_DEFAULT);
    kelp_image_shape s = shape_of(variable, i);
    *bytes = (size_t)s.h * s.w * s.c;
    uint8_t *out = malloc(*bytes);
    assert_non_null(out);
    hsize_t start[4] = {(hsize_t)i, 0, 0, 0}, count[4] = {1, s.h, s.w, s.c};
    int rank = 4;
    if (variable) {
        start[0] = 0;
        for (int j = 0; j < i; j++) {
            kelp_image_shape sj = shape_of(true, j);
            start[0] += (hsize_t)sj.h * sj.w * sj.c;
        }
        count[0] = *bytes;
        rank = 1;
    }
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(rank, count, NULL);
    assert_true(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0);
    assert_true(H5Dread(d, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, out) >= 0);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    h5c_close(f);
    return out;
}

static void assert_reads_as_h5dread(const char *path, bool variable)
{
    uint8_t *want[COUNT];
    size_t bytes[COUNT];
    for (int i = 0; i < COUNT; i++) /* before kelp opens the file: HDF5 opens a file once per process */
        want[i] = h5_image(path, variable, i, &bytes[i]);
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(path, &ds));
    for (int i = 0; i < COUNT; i++) {
        uint8_t *got = malloc(bytes[i]);
        assert_non_null(got);
        TEST_OK(kelp_dataset_read_image(ds, KELP_SPLIT_TRAIN, i, got, bytes[i]));
        assert_memory_equal(got, want[i], bytes[i]);
        free(got);
        free(want[i]);
    }
    kelp_dataset_close(ds);
}

static void test_same_bytes_as_h5dread(void **state)
{
    (void)state;
    for (int variable = 0; variable < 2; variable++) {
        const char *path = test_temp_path(".h5");
        write_file(path, variable);
        assert_reads_as_h5dread(path, variable);
        unlink(path);
    }
}

/* h5py's habit: shuffle before deflate. Not a layout the raw path takes; H5Dread reads it. */
static void test_other_filters_read_through_hdf5(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    write_file(path, false);
    kelp_image_shape s = shape_of(false, 0);
    size_t bytes = (size_t)s.h * s.w * s.c;
    uint8_t *all = malloc(COUNT * bytes);
    assert_non_null(all);
    for (int i = 0; i < COUNT; i++) {
        size_t n;
        uint8_t *img = h5_image(path, false, i, &n);
        memcpy(all + (size_t)i * bytes, img, bytes);
        free(img);
    }
    hid_t f = h5c_open_rw(path);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    const hsize_t dims[4] = {COUNT, s.h, s.w, s.c}, chunk[4] = {1, s.h, s.w, s.c};
    assert_true(H5Pset_chunk(dcpl, 4, chunk) >= 0 && H5Pset_shuffle(dcpl) >= 0 && H5Pset_deflate(dcpl, 6) >= 0);
    h5c_put(f, "/train/images", H5T_STD_U8LE, 4, dims, dcpl, all);
    H5Pclose(dcpl);
    h5c_close(f);
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(path, &ds));
    uint8_t *got = malloc(bytes);
    assert_non_null(got);
    TEST_OK(kelp_dataset_read_image(ds, KELP_SPLIT_TRAIN, 3, got, bytes));
    assert_memory_equal(got, all + 3 * bytes, bytes);
    kelp_dataset_close(ds);
    free(got);
    free(all);
    unlink(path);
}

/* H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS stores the last, partial chunk of images_flat unfiltered but with filter
 * mask 0: the raw path cannot tell, so such files are read through H5Dread. */
static void test_unfiltered_edge_chunk_read_through_hdf5(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    write_file(path, true);
    size_t total = 0, bytes[COUNT];
    uint8_t *image[COUNT];
    for (int i = 0; i < COUNT; i++) {
        image[i] = h5_image(path, true, i, &bytes[i]);
        total += bytes[i];
    }
    uint8_t *all = malloc(total), *at = all;
    assert_non_null(all);
    for (int i = 0; i < COUNT; i++) {
        memcpy(at, image[i], bytes[i]);
        at += bytes[i];
        free(image[i]);
    }
    hid_t f = h5c_open_rw(path);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    const hsize_t dims = total, chunk = 16384;
    assert_true(total % chunk != 0);
    assert_true(H5Pset_chunk(dcpl, 1, &chunk) >= 0 && H5Pset_deflate(dcpl, 4) >= 0 &&
                H5Pset_chunk_opts(dcpl, H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS) >= 0);
    h5c_put(f, "/train/images_flat", H5T_STD_U8LE, 1, &dims, dcpl, all);
    H5Pclose(dcpl);
    h5c_close(f);
    assert_reads_as_h5dread(path, true);
    free(all);
    unlink(path);
}

/* Replaces the stored bytes of image i's chunk (fixed layout). */
static void write_chunk(const char *path, int i, uint32_t filter_mask, const void *data, size_t size)
{
    hid_t f = h5c_open_rw(path);
    hid_t d = H5Dopen2(f, "/train/images", H5P_DEFAULT);
    const hsize_t offset[4] = {(hsize_t)i, 0, 0, 0};
    assert_true(H5Dwrite_chunk(d, H5P_DEFAULT, filter_mask, offset, size, data) >= 0);
    H5Dclose(d);
    h5c_close(f);
}

static void expect_read_fails(const char *path, int i, const char *needle)
{
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(path, &ds));
    uint8_t buf[64 * 48 * 3];
    char want[128];
    snprintf(want, sizeof want, "/train/images: cannot read image %d (%s", i, needle);
    TEST_FAILS_WITH(kelp_dataset_read_image(ds, KELP_SPLIT_TRAIN, i, buf, sizeof buf), KELP_ERR_FORMAT, want);
    if (!strstr(kelp_last_error(), path))
        fail_msg("message \"%s\" does not name the file", kelp_last_error());
    TEST_OK(kelp_dataset_read_image(ds, KELP_SPLIT_TRAIN, 2, buf, sizeof buf)); /* the others still read */
    kelp_dataset_close(ds);
}

static void test_unfiltered_and_damaged_chunks(void **state)
{
    (void)state;
    const char *path = test_temp_path(".h5");
    write_file(path, false);
    const size_t bytes = 64 * 48 * 3;
    uint8_t *raw = malloc(bytes), *packed = malloc(compressBound(bytes));
    assert_non_null(raw);
    assert_non_null(packed);
    for (size_t p = 0; p < bytes; p++)
        raw[p] = (uint8_t)(p * 31);

    /* deflate skipped for this chunk (filter mask bit 0): the bytes are the pixels */
    write_chunk(path, 2, 1, raw, bytes);
    kelp_dataset *ds;
    TEST_OK(kelp_dataset_open(path, &ds));
    uint8_t *got = malloc(bytes);
    assert_non_null(got);
    TEST_OK(kelp_dataset_read_image(ds, KELP_SPLIT_TRAIN, 2, got, bytes));
    assert_memory_equal(got, raw, bytes);
    kelp_dataset_close(ds);

    /* a valid deflate stream of one byte too few */
    uLongf n = compressBound(bytes);
    assert_int_equal(compress2(packed, &n, raw, bytes - 1, 4), Z_OK);
    write_chunk(path, 1, 0, packed, n);
    expect_read_fails(path, 1, "deflate: a chunk of 9216 bytes inflates to 9215");

    /* a stream cut short, and garbage */
    n = compressBound(bytes);
    assert_int_equal(compress2(packed, &n, raw, bytes, 4), Z_OK);
    write_chunk(path, 3, 0, packed, n / 2);
    expect_read_fails(path, 3, "deflate: the stream ends early");
    memset(packed, 0xFF, 64);
    write_chunk(path, 4, 0, packed, 64);
    expect_read_fails(path, 4, "deflate: ");

    /* more stored bytes than deflate ever produces for a chunk of that size */
    uint8_t *big = calloc(2 * bytes, 1);
    assert_non_null(big);
    write_chunk(path, 0, 0, big, 2 * bytes);
    expect_read_fails(path, 0, "a chunk of 9216 bytes is stored in 18432 bytes, more than deflate ever takes");
    free(big);
    free(got);
    free(raw);
    free(packed);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_bytes_as_h5dread),
        cmocka_unit_test(test_other_filters_read_through_hdf5),
        cmocka_unit_test(test_unfiltered_edge_chunk_read_through_hdf5),
        cmocka_unit_test(test_unfiltered_and_damaged_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
